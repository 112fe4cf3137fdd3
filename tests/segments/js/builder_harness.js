/* A tiny DOM for running static/segments/rule-builder.js under Node in tests (no jsdom).
 * Usage: node builder_harness.js <rule-builder.js> <config.json> <initial-rules.json>
 * Renders every field with every operator, clicks through a few widgets, and prints
 * {"rules": <textarea JSON>, "previews": [<bodies posted to the preview URL>]}. */
"use strict";
const fs = require("fs");
const [script, configPath, rulesPath] = process.argv.slice(2);

class Node {
  constructor(tag) {
    this.tagName = (tag || "#text").toUpperCase();
    this.children = [];
    this.attributes = {};
    this.listeners = {};
    this.parent = null;
    this._text = "";
    this._value = "";
    this.checked = false;
    this.hidden = false;
    const self = this;
    this.classList = {
      add(c) { const s = new Set(self.className.split(" ").filter(Boolean)); s.add(c); self.className = [...s].join(" "); },
      remove(c) { self.className = self.className.split(" ").filter((x) => x && x !== c).join(" "); },
      contains(c) { return self.className.split(" ").includes(c); },
    };
  }
  get className() { return this.attributes.class || ""; }
  set className(v) { this.attributes.class = v; }
  setAttribute(k, v) {
    if (k === "checked") this.checked = true;
    else if (k === "value") this._value = String(v);
    else if (k === "hidden") this.hidden = true;
    this.attributes[k] = String(v);
  }
  getAttribute(k) { return k in this.attributes ? this.attributes[k] : null; }
  appendChild(c) { c.parent = this; this.children.push(c); return c; }
  insertBefore(c, ref) { c.parent = this; const i = this.children.indexOf(ref); this.children.splice(i < 0 ? 0 : i, 0, c); return c; }
  get firstChild() { return this.children[0] || null; }
  set innerHTML(_v) { this.children = []; }
  get textContent() { return this.tagName === "#TEXT" ? this._text : this._text + this.children.map((c) => c.textContent).join(""); }
  set textContent(v) { this.children = []; this._text = String(v); }
  get value() {
    if (this.tagName === "SELECT") {
      const opts = this.all().filter((n) => n.tagName === "OPTION");
      const chosen = opts.find((o) => o.attributes.selected !== undefined) || opts[0];
      return chosen ? chosen._value : "";
    }
    return this._value;
  }
  set value(v) {
    if (this.tagName === "SELECT") {
      this.all().filter((n) => n.tagName === "OPTION").forEach((o) => {
        if (o._value === String(v)) o.attributes.selected = "selected"; else delete o.attributes.selected;
      });
    } else this._value = String(v);
  }
  addEventListener(type, fn) { (this.listeners[type] = this.listeners[type] || []).push(fn); }
  fire(type, extra) { (this.listeners[type] || []).forEach((fn) => fn(Object.assign({ target: this, key: "", preventDefault() {} }, extra || {}))); }
  all() { return this.children.flatMap((c) => [c, ...c.all()]); }
  matches(sel) {
    const m = sel.match(/^([a-z]*)(\.[\w-]+)?(\[([\w-]+)(=["']?([^"'\]]*)["']?)?\])?$/);
    if (!m) throw new Error("selector " + sel);
    if (m[1] && this.tagName !== m[1].toUpperCase()) return false;
    if (m[2] && !this.classList.contains(m[2].slice(1))) return false;
    if (m[4]) {
      if (this.getAttribute(m[4]) === null) return false;
      if (m[5] && this.getAttribute(m[4]) !== m[6]) return false;
    }
    return true;
  }
  querySelectorAll(sel) {
    const parts = sel.trim().split(/\s+/);
    let scope = [this];
    for (const part of parts) {
      const found = new Set();
      scope.forEach((n) => n.all().filter((c) => c.matches(part)).forEach((c) => found.add(c)));
      scope = [...found];
    }
    return this.all().filter((n) => scope.includes(n));
  }
  querySelector(sel) { return this.querySelectorAll(sel)[0] || null; }
}

const body = new Node("body");
const config = fs.readFileSync(configPath, "utf8");
const cfgNode = body.appendChild(new Node("script"));
cfgNode.setAttribute("id", "segment-builder-config");
cfgNode.textContent = config;
const builderRoot = body.appendChild(new Node("div"));
builderRoot.className = "segment-builder";
builderRoot.setAttribute("data-for", "id_rules");
const preview = body.appendChild(new Node("div"));
preview.className = "segment-preview";
preview.setAttribute("data-for", "id_rules");
for (const cls of ["segment-preview-count", "segment-preview-explanation", "segment-preview-errors", "segment-preview-refresh"]) {
  const n = preview.appendChild(new Node(cls.endsWith("refresh") ? "button" : "span"));
  n.className = cls;
}
const table = preview.appendChild(new Node("table"));
table.className = "segment-preview-sample";
table.appendChild(new Node("tbody"));
const textarea = body.appendChild(new Node("textarea"));
textarea.setAttribute("id", "id_rules");
textarea.value = fs.readFileSync(rulesPath, "utf8");

const docListeners = {};
global.document = {
  cookie: "csrftoken=abc",
  createElement: (t) => new Node(t),
  createTextNode: (t) => { const n = new Node("#text"); n._text = String(t); return n; },
  getElementById: (id) => body.all().find((n) => n.getAttribute("id") === id) || null,
  querySelector: (s) => body.querySelector(s),
  querySelectorAll: (s) => body.querySelectorAll(s),
  addEventListener: (t, fn) => { (docListeners[t] = docListeners[t] || []).push(fn); },
};
global.window = {};
const previews = [];
global.fetch = (url, opts) => {
  if (opts && opts.method === "POST") previews.push(JSON.parse(opts.body));
  const data = opts && opts.method === "POST"
    ? { ok: true, count: 2, sample: [{ id: 1, external_id: "a", last_name: "A", city: "X", url: "/c/1/" }], explanation: "e" }
    : { results: [{ id: 99, text: "Found product" }] };
  return Promise.resolve({ json: () => Promise.resolve(data) });
};
global.setTimeout = (fn) => { fn(); return 0; };
global.clearTimeout = () => {};

eval(fs.readFileSync(script, "utf8"));
docListeners.DOMContentLoaded.forEach((fn) => fn());
const b = window.lichnoSegmentBuilder;

// Every field with every operator renders.
for (const field of b.cfg.catalog.fields) {
  for (const op of field.operators) {
    const rule = b.newRule(field.key);
    rule.operator = op.key;
    b.tree.rules.push(rule);
    b.render();
    b.tree.rules.pop();
  }
}

// Click through: add a condition, choose "age", "between", type 30 and 40.
const click = (n) => n.fire("click");
const buttons = () => builderRoot.querySelectorAll("button");
click(buttons().find((n) => n.textContent.includes(b.L.add_rule)));
let row = builderRoot.querySelectorAll(".sb-rule").slice(-1)[0];
let fieldSelect = row.querySelector("select.sb-field");
fieldSelect.value = "age"; fieldSelect.fire("change");
row = builderRoot.querySelectorAll(".sb-rule").slice(-1)[0];
const opSelect = row.querySelector("select.sb-operator");
opSelect.value = "between"; opSelect.fire("change");
row = builderRoot.querySelectorAll(".sb-rule").slice(-1)[0];
const inputs = row.querySelectorAll("input").filter((n) => n.getAttribute("type") === "number");
inputs[0].value = "30"; inputs[0].fire("change");
inputs[1].value = "40"; inputs[1].fire("change");

// A nested "any" group with a category bought in the last 30 days, negated.
click(buttons().find((n) => n.textContent.includes(b.L.add_group)));
const group = builderRoot.querySelectorAll(".sb-group").slice(-1)[0];
group.querySelector("input").checked = true; group.querySelector("input").fire("change");
row = group.querySelector(".sb-rule");
fieldSelect = row.querySelector("select.sb-field");
fieldSelect.value = "bought_category"; fieldSelect.fire("change");
row = builderRoot.querySelectorAll(".sb-group").slice(-1)[0].querySelector(".sb-rule");
const pick = row.querySelector(".sb-value").querySelector("select");
// The category the test names (by id: option order follows the tree, not the ids).
const wanted = String(JSON.parse(config).test_pick_category);
pick.value = pick.querySelectorAll("option").find((o) => o.value === wanted).value; pick.fire("change");
row = builderRoot.querySelectorAll(".sb-group").slice(-1)[0].querySelector(".sb-rule");
const period = row.querySelector(".sb-period").querySelector("select");
period.value = "last_days"; period.fire("change");

// Products are searched.
b.tree.rules.push(b.newRule("bought_product")); b.render();
row = builderRoot.querySelectorAll(".sb-rule").slice(-1)[0];
const search = row.querySelectorAll("input").find((n) => n.getAttribute("type") === "search");
search.value = "lap"; search.fire("input");

setImmediate(() => {
  row = builderRoot.querySelectorAll(".sb-rule").slice(-1)[0];
  const results = row.querySelector("select.sb-search-results");
  results.value = "99"; results.fire("change");
  b.markInvalid("rules[0].value");
  process.stdout.write(JSON.stringify({
    rules: JSON.parse(textarea.value),
    previews: previews.length,
    invalid: builderRoot.querySelectorAll(".sb-invalid").map((n) => n.getAttribute("data-path")),
  }));
});
