/* Lichno segment rule builder: draws the rule tree stored in the JSON textarea as groups and
 * rule rows a marketer edits with the mouse, writes the JSON back on every change and asks the
 * admin preview endpoint for the count, a sample and the explanation. No dependencies. */
(function () {
  "use strict";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
      else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
    });
    (children || []).forEach(function (child) {
      if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function select(options, current, onChange, attrs) {
    var node = el("select", attrs || {});
    options.forEach(function (opt) {
      if (opt.group) {
        var group = el("optgroup", { label: opt.group });
        opt.options.forEach(function (o) {
          group.appendChild(el("option", { value: o[0], text: o[1], selected: String(o[0]) === String(current) }));
        });
        node.appendChild(group);
      } else {
        node.appendChild(el("option", { value: opt[0], text: opt[1], selected: String(opt[0]) === String(current) }));
      }
    });
    node.addEventListener("change", function () { onChange(node.value); });
    return node;
  }

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    var match = document.cookie.match(/csrftoken=([^;]+)/);
    return match ? match[1] : "";
  }

  function Builder(root, cfg) {
    this.root = root;
    this.cfg = cfg;
    this.L = cfg.labels || {};
    this.textarea = document.getElementById(root.getAttribute("data-for"));
    this.preview = document.querySelector('.segment-preview[data-for="' + root.getAttribute("data-for") + '"]');
    this.fields = {};
    var self = this;
    cfg.catalog.fields.forEach(function (f) { self.fields[f.key] = f; });
    this.load();
    this.textarea.addEventListener("change", function () { self.load(); self.render(); self.schedule(); });
    this.preview.querySelector(".segment-preview-refresh").addEventListener("click", function () { self.runPreview(); });
    this.render();
    this.runPreview();
  }

  Builder.prototype.load = function () {
    var tree;
    try { tree = JSON.parse(this.textarea.value || "{}"); } catch (e) { tree = null; }
    if (!tree || typeof tree !== "object" || Array.isArray(tree) || !Array.isArray(tree.rules)) {
      tree = { match: "all", negate: false, rules: [] };
    }
    this.tree = tree;
  };

  Builder.prototype.commit = function () {
    this.textarea.value = JSON.stringify(this.tree, null, 2);
    this.schedule();
  };

  Builder.prototype.changed = function () { this.render(); this.commit(); };

  Builder.prototype.render = function () {
    this.root.innerHTML = "";
    this.root.appendChild(this.renderGroup(this.tree, "", null, -1));
  };

  Builder.prototype.fieldOptions = function () {
    var groups = {};
    var order = [];
    this.cfg.catalog.fields.forEach(function (f) {
      if (!groups[f.group]) { groups[f.group] = { group: f.group_label, options: [] }; order.push(f.group); }
      groups[f.group].options.push([f.key, f.label]);
    });
    return order.map(function (g) { return groups[g]; });
  };

  Builder.prototype.renderGroup = function (node, path, parent, index) {
    var self = this;
    var L = this.L;
    var box = el("div", { className: "sb-group", "data-path": path });
    var head = el("div", { className: "sb-group-head" }, [
      el("label", { className: "sb-not" }, [
        el("input", {
          type: "checkbox", checked: !!node.negate,
          onchange: function (e) { node.negate = e.target.checked; self.commit(); }
        }), " " + L.not
      ]),
      select(this.cfg.catalog.match.map(function (m) { return [m.key, m.label]; }), node.match || "all",
        function (v) { node.match = v; self.commit(); }, { "aria-label": L.match }),
      el("span", { className: "sb-hint", text: L.conditions }),
      el("button", {
        type: "button", className: "button", text: "+ " + L.add_rule,
        onclick: function () { node.rules.push(self.newRule("gender")); self.changed(); }
      }),
      el("button", {
        type: "button", className: "button", text: "+ " + L.add_group,
        onclick: function () { node.rules.push({ match: "any", negate: false, rules: [self.newRule("gender")] }); self.changed(); }
      }),
      parent ? el("button", {
        type: "button", className: "button sb-remove", text: "× " + L.remove_group,
        onclick: function () { parent.rules.splice(index, 1); self.changed(); }
      }) : null
    ]);
    box.appendChild(head);
    var list = el("div", { className: "sb-children" });
    if (!node.rules.length) list.appendChild(el("p", { className: "sb-empty", text: L.empty }));
    node.rules.forEach(function (child, i) {
      var childPath = (path ? path + "." : "") + "rules[" + i + "]";
      list.appendChild(child && child.field !== undefined
        ? self.renderRule(child, childPath, node, i)
        : self.renderGroup(child, childPath, node, i));
    });
    box.appendChild(list);
    return box;
  };

  Builder.prototype.newRule = function (key) {
    var field = this.fields[key];
    var rule = { field: key, operator: field.operators[0].key, negate: false };
    field.params.forEach(function (p) {
      if (p.required && p.choices) rule[p.name] = p.choices[0][0];
      else if (p.default !== undefined) rule[p.name] = p.default;
    });
    return rule;
  };

  Builder.prototype.renderRule = function (rule, path, parent, index) {
    var self = this;
    var L = this.L;
    var field = this.fields[rule.field];
    var row = el("div", { className: "sb-rule", "data-path": path });
    if (!field) {
      row.appendChild(el("span", { className: "sb-error", text: L.unknown_field + " " + rule.field }));
      row.appendChild(el("button", { type: "button", className: "button", text: "×", onclick: function () { parent.rules.splice(index, 1); self.changed(); } }));
      return row;
    }
    var op = field.operators.filter(function (o) { return o.key === rule.operator; })[0] || field.operators[0];
    row.appendChild(el("label", { className: "sb-not" }, [
      el("input", { type: "checkbox", checked: !!rule.negate, onchange: function (e) { rule.negate = e.target.checked; self.commit(); } }),
      " " + L.not
    ]));
    row.appendChild(select(this.fieldOptions(), rule.field, function (v) {
      parent.rules[index] = self.newRule(v); self.changed();
    }, { className: "sb-field", "aria-label": L.field }));
    row.appendChild(select(field.operators.map(function (o) { return [o.key, o.label]; }), op.key, function (v) {
      var next = field.operators.filter(function (o) { return o.key === v; })[0];
      if (next.arity !== op.arity || next.value_type !== op.value_type) delete rule.value;
      rule.operator = v; self.changed();
    }, { className: "sb-operator", "aria-label": L.operator }));
    var valueBox = el("span", { className: "sb-value" });
    this.valueEditor(rule, field, op, valueBox);
    row.appendChild(valueBox);
    field.params.forEach(function (param) { row.appendChild(self.paramEditor(rule, param)); });
    row.appendChild(el("button", {
      type: "button", className: "button sb-remove", title: L.remove, text: "×",
      onclick: function () { parent.rules.splice(index, 1); self.changed(); }
    }));
    if (field.help) row.appendChild(el("div", { className: "sb-help", text: field.help }));
    return row;
  };

  Builder.prototype.scalarInput = function (type, value, onValue, attrs) {
    var self = this;
    var input;
    if (type === "int" || type === "decimal") {
      input = el("input", Object.assign({ type: "number", step: type === "int" ? "1" : "any", min: type === "int" ? "0" : undefined, value: value === undefined ? "" : value }, attrs || {}));
    } else if (type === "date") {
      input = el("input", Object.assign({ type: "date", value: value || "" }, attrs || {}));
    } else {
      input = el("input", Object.assign({ type: "text", value: value === undefined ? "" : String(value) }, attrs || {}));
    }
    input.addEventListener("change", function () { onValue(self.parse(type, input.value)); });
    return input;
  };

  Builder.prototype.parse = function (type, text) {
    text = (text || "").trim();
    if (text === "") return undefined;
    if (type === "int") return parseInt(text, 10);
    if (type === "decimal") return text.replace(",", ".");
    if (type === "scalar") {
      if (text === "true") return true;
      if (text === "false") return false;
      if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
    }
    return text;
  };

  Builder.prototype.valueEditor = function (rule, field, op, box) {
    var self = this;
    var type = op.value_type;
    var set = function (v) { if (v === undefined) delete rule.value; else rule.value = v; self.commit(); };
    if (op.arity === "none") return;
    if (op.arity === "one") {
      var choices = (field.choices_for && field.choices_for[op.key]) || (type === "choice" ? field.choices : null);
      if (choices) {
        if (rule.value === undefined) { rule.value = type === "int" ? parseInt(choices[0][0], 10) : choices[0][0]; }
        box.appendChild(select(choices, rule.value, function (v) { set(type === "int" ? parseInt(v, 10) : v); }));
      } else {
        box.appendChild(this.scalarInput(type, rule.value, set, { placeholder: op.key.indexOf("days") >= 0 ? this.L.days : "" }));
      }
      return;
    }
    if (op.arity === "two") {
      var pair = Array.isArray(rule.value) ? rule.value.slice() : [undefined, undefined];
      var setPair = function (i) {
        return function (v) { pair[i] = v; rule.value = pair; self.commit(); };
      };
      box.appendChild(this.scalarInput(type, pair[0], setPair(0), { "aria-label": this.L.from }));
      box.appendChild(document.createTextNode(" " + this.L.and + " "));
      box.appendChild(this.scalarInput(type, pair[1], setPair(1), { "aria-label": this.L.to }));
      return;
    }
    var values = Array.isArray(rule.value) ? rule.value : [];
    var setMany = function (list) { if (list.length) rule.value = list; else delete rule.value; self.commit(); };
    if (type === "choice") {
      field.choices.forEach(function (c) {
        box.appendChild(el("label", { className: "sb-check" }, [
          el("input", {
            type: "checkbox", checked: values.indexOf(c[0]) >= 0,
            onchange: function (e) {
              var next = values.filter(function (v) { return v !== c[0]; });
              if (e.target.checked) next.push(c[0]);
              values = next; setMany(next);
            }
          }), " " + c[1]
        ]));
      });
      return;
    }
    var options = null;
    if (type === "ref") options = this.cfg.refs[field.ref] || [];
    else if (field.key === "city") options = this.cfg.refs.city || [];
    box.appendChild(this.chips(values, options, setMany, {
      free: type !== "ref", search: field.ref === "product", type: type
    }));
  };

  Builder.prototype.paramEditor = function (rule, param) {
    var self = this;
    var L = this.L;
    var wrap = el("span", { className: "sb-param" }, [el("span", { className: "sb-param-label", text: param.label })]);
    var set = function (v) {
      if (v === undefined || v === "" || (Array.isArray(v) && !v.length)) delete rule[param.name];
      else rule[param.name] = v;
      self.commit();
    };
    if (param.type === "period") wrap.appendChild(this.periodEditor(rule));
    else if (param.type === "choice") {
      var opts = (param.required ? [] : [["", "—"]]).concat(param.choices);
      wrap.appendChild(select(opts, rule[param.name] === undefined ? "" : rule[param.name], set));
    } else if (param.type === "bool") {
      wrap.insertBefore(el("input", {
        type: "checkbox", checked: !!rule[param.name],
        onchange: function (e) { rule[param.name] = e.target.checked; self.commit(); }
      }), wrap.firstChild);
    } else if (param.type === "ref") {
      wrap.appendChild(this.chips(rule[param.name] || [], this.cfg.refs[param.ref] || [], set, { search: param.ref === "product", type: "ref" }));
    } else {
      wrap.appendChild(this.scalarInput("string", rule[param.name], set, { size: 12, placeholder: L.key }));
    }
    return wrap;
  };

  Builder.prototype.periodEditor = function (rule) {
    var self = this;
    var L = this.L;
    var period = rule.period || {};
    var kind = "any";
    if (period.last_days !== undefined) kind = "last_days";
    else if (period.last_hours !== undefined) kind = "last_hours";
    else if (period.from !== undefined || period.to !== undefined) kind = "between";
    var box = el("span", { className: "sb-period" });
    var labels = this.cfg.catalog.period;
    box.appendChild(select([["any", L.any_time], ["last_days", labels.last_days], ["last_hours", labels.last_hours], ["between", labels.between]], kind, function (v) {
      if (v === "any") delete rule.period;
      else if (v === "last_days") rule.period = { last_days: 30 };
      else if (v === "last_hours") rule.period = { last_hours: 24 };
      else rule.period = { from: "", to: "" };
      self.changed();
    }));
    var setKey = function (key, type) {
      return function (v) { rule.period = rule.period || {}; if (v === undefined) delete rule.period[key]; else rule.period[key] = v; self.commit(); };
    };
    if (kind === "last_days" || kind === "last_hours") {
      box.appendChild(this.scalarInput("int", period[kind], setKey(kind), { min: "1", className: "sb-short" }));
    } else if (kind === "between") {
      box.appendChild(this.scalarInput("date", period.from, setKey("from")));
      box.appendChild(document.createTextNode(" – "));
      box.appendChild(this.scalarInput("date", period.to, setKey("to")));
    }
    return box;
  };

  Builder.prototype.chips = function (values, options, onChange, opts) {
    var self = this;
    var L = this.L;
    var labels = {};
    (options || []).forEach(function (o) { labels[String(o[0])] = o[1]; });
    var box = el("span", { className: "sb-chips" });
    var current = values.slice();
    var redraw = function () { onChange(current); self.render(); };
    current.forEach(function (v, i) {
      box.appendChild(el("span", { className: "sb-chip" }, [
        labels[String(v)] || String(v),
        el("button", { type: "button", title: L.remove, text: "×", onclick: function () { current.splice(i, 1); redraw(); } })
      ]));
    });
    var add = function (v) {
      if (v === undefined || v === "") return;
      if (current.map(String).indexOf(String(v)) < 0) current.push(v);
      redraw();
    };
    if (opts.search) {
      var results = el("select", { className: "sb-search-results", hidden: true });
      var input = el("input", { type: "search", placeholder: L.search, size: 14 });
      var timer = null;
      input.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(function () {
          fetch(self.cfg.lookup_url + "?ref=product&q=" + encodeURIComponent(input.value), { credentials: "same-origin" })
            .then(function (r) { return r.json(); })
            .then(function (data) {
              results.innerHTML = "";
              results.appendChild(el("option", { value: "", text: data.results.length ? L.choose : L.nothing_found }));
              data.results.forEach(function (p) {
                self.cfg.refs.product = (self.cfg.refs.product || []).concat([[p.id, p.text]]);
                results.appendChild(el("option", { value: p.id, text: p.text }));
              });
              results.hidden = false;
            });
        }, 300);
      });
      results.addEventListener("change", function () { add(parseInt(results.value, 10)); });
      box.appendChild(input);
      box.appendChild(results);
    } else if (options && !opts.free) {
      var choices = [["", "+ " + L.add]].concat(options.filter(function (o) { return current.map(String).indexOf(String(o[0])) < 0; }));
      box.appendChild(select(choices, "", function (v) { add(opts.type === "ref" ? parseInt(v, 10) : v); }));
    } else {
      var listId = "sb-list-" + Math.random().toString(36).slice(2);
      var free = el("input", { type: "text", placeholder: L.type_and_enter, list: options ? listId : undefined, size: 16 });
      var take = function () { var v = self.parse(opts.type || "string", free.value); free.value = ""; add(v); };
      free.addEventListener("keydown", function (e) { if (e.key === "Enter") { e.preventDefault(); take(); } });
      free.addEventListener("change", take);
      box.appendChild(free);
      if (options) {
        var datalist = el("datalist", { id: listId });
        options.forEach(function (o) { datalist.appendChild(el("option", { value: o[0] })); });
        box.appendChild(datalist);
      }
    }
    return box;
  };

  Builder.prototype.schedule = function () {
    var self = this;
    clearTimeout(this.timer);
    this.timer = setTimeout(function () { self.runPreview(); }, 500);
  };

  Builder.prototype.runPreview = function () {
    var self = this;
    var L = this.L;
    var countNode = this.preview.querySelector(".segment-preview-count");
    var explanation = this.preview.querySelector(".segment-preview-explanation");
    var errors = this.preview.querySelector(".segment-preview-errors");
    var sample = this.preview.querySelector(".segment-preview-sample tbody");
    countNode.textContent = L.counting;
    var seq = (this.seq = (this.seq || 0) + 1);
    fetch(this.cfg.preview_url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({ rules: this.tree, segment_id: this.cfg.segment_id })
    }).then(function (r) { return r.json(); }).then(function (data) {
      if (seq !== self.seq) return;
      errors.innerHTML = "";
      sample.innerHTML = "";
      Array.prototype.forEach.call(self.root.querySelectorAll(".sb-invalid"), function (n) { n.classList.remove("sb-invalid"); });
      if (!data.ok) {
        countNode.textContent = "—";
        explanation.textContent = "";
        (data.errors || []).forEach(function (e) {
          errors.appendChild(el("li", { text: (e.path ? e.path + ": " : "") + e.message }));
          self.markInvalid(e.path);
        });
        return;
      }
      countNode.textContent = data.count.toLocaleString();
      explanation.textContent = data.explanation;
      data.sample.forEach(function (c) {
        var name = [c.last_name, c.first_name].filter(Boolean).join(" ") || c.external_id || ("#" + c.id);
        sample.appendChild(el("tr", {}, [
          el("td", {}, [el("a", { href: c.url, text: name })]),
          el("td", { text: c.external_id || "" }),
          el("td", { text: c.city || "" })
        ]));
      });
    }).catch(function () { countNode.textContent = L.preview_failed; });
  };

  Builder.prototype.markInvalid = function (path) {
    var best = null;
    Array.prototype.forEach.call(this.root.querySelectorAll("[data-path]"), function (node) {
      var p = node.getAttribute("data-path");
      if ((path === p || path.indexOf(p + ".") === 0 || path.indexOf(p + "[") === 0 || p === "") &&
          (!best || p.length > best.getAttribute("data-path").length)) best = node;
    });
    if (best) best.classList.add("sb-invalid");
  };

  document.addEventListener("DOMContentLoaded", function () {
    var cfgNode = document.getElementById("segment-builder-config");
    var root = document.querySelector(".segment-builder");
    if (!cfgNode || !root) return;
    window.lichnoSegmentBuilder = new Builder(root, JSON.parse(cfgNode.textContent));
  });
})();
