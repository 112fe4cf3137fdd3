"""Rule trees: validation against the field catalog, and explanation in plain words.

A tree is a group ``{"match": "all"|"any", "negate": false, "rules": [...]}`` whose rules are
groups again or rules ``{"field": ..., "operator": ..., "value": ..., <params>, "negate": false}``.
Errors name the place in the tree the way the JSON reads: ``rules[2].value``,
``rules[0].rules[1].period.last_days``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from segments.catalog import (
    BOOL,
    CHOICE,
    DATE,
    DECIMAL,
    FIELDS,
    INT,
    MANY,
    MAX_DEPTH,
    MAX_LIST,
    MAX_PERIOD_DAYS,
    MAX_RULES,
    NONE,
    ONE,
    OPERATORS,
    PERIOD,
    REF,
    SCALAR,
    STRING,
    TWO,
    Field,
    Param,
    ref_models,
)

ATTRIBUTE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
GROUP_KEYS = {"match", "rules", "negate"}
RULE_KEYS = {"field", "operator", "value", "negate"}


class RulesError(ValidationError):
    """Invalid rules; ``errors`` is a list of (path, message), path like ``rules[2].value``."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__([f"{path}: {message}" if path else message for path, message in errors])


class _Invalid(Exception):
    def __init__(self, message: Any) -> None:
        self.message = str(message)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# Value checks -------------------------------------------------------------------------------------


def _as_int(value: Any, *, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool):
        raise _Invalid(_("expected a whole number"))
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise _Invalid(_("expected a whole number"))
    if value < low:
        raise _Invalid(_("must be at least %(low)s") % {"low": low})
    if high is not None and value > high:
        raise _Invalid(_("must be at most %(high)s") % {"high": high})
    return value


def _as_decimal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid(_("expected a number"))
    try:
        number = Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        raise _Invalid(_("expected a number")) from None
    if not number.is_finite() or abs(number) >= Decimal("1e12"):
        raise _Invalid(_("expected a number"))
    return str(number)


def _as_string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(_("expected non-empty text"))
    if len(value) > 255:
        raise _Invalid(_("at most 255 characters"))
    return value.strip()


def _as_date(value: Any) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise _Invalid(_("expected a date YYYY-MM-DD")) from None


def _as_choice(value: Any, choices: Iterable[tuple[Any, Any]]) -> Any:
    allowed = [v for v, _label in choices]
    if value not in allowed:
        raise _Invalid(
            _("unknown value %(value)r; expected one of: %(allowed)s")
            % {"value": value, "allowed": ", ".join(repr(v) for v in allowed)}
        )
    return value


def _as_scalar(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) > 255:
            raise _Invalid(_("at most 255 characters"))
        return value
    if isinstance(value, bool | int | float):
        return value
    raise _Invalid(_("expected text, a number or true/false"))


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(_("expected true or false"))
    return value


def _as_period(value: Any, path: str, errors: list[tuple[str, str]]) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        errors.append((path, gettext("expected an object with last_days, last_hours or from/to")))
        return None
    keys = set(value)
    unknown = keys - {"last_days", "last_hours", "from", "to"}
    if unknown:
        errors.append(
            (path, gettext("unknown keys: %(keys)s") % {"keys": ", ".join(sorted(unknown))})
        )
        return None
    kinds = [k for k in ("last_days", "last_hours") if k in keys] + (
        ["dates"] if keys & {"from", "to"} else []
    )
    if len(kinds) != 1:
        errors.append((path, gettext("give exactly one of last_days, last_hours or from/to")))
        return None
    try:
        if "last_days" in keys:
            return {"last_days": _as_int(value["last_days"], low=1, high=MAX_PERIOD_DAYS)}
        if "last_hours" in keys:
            return {"last_hours": _as_int(value["last_hours"], low=1, high=MAX_PERIOD_DAYS * 24)}
    except _Invalid as exc:
        errors.append((_join(path, kinds[0]), exc.message))
        return None
    out: dict[str, Any] = {}
    for key in ("from", "to"):
        if value.get(key) not in (None, ""):
            try:
                out[key] = _as_date(value[key])
            except _Invalid as exc:
                errors.append((_join(path, key), exc.message))
                return None
    if not out:
        errors.append((path, gettext("give a start date, an end date or both")))
        return None
    if "from" in out and "to" in out and out["from"] > out["to"]:
        errors.append((_join(path, "to"), gettext("the end date is before the start date")))
        return None
    return out


class _Validator:
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []
        self.refs: dict[str, dict[int, str]] = defaultdict(dict)  # model -> id -> first path
        self.count = 0

    def fail(self, path: str, message: Any) -> None:
        self.errors.append((path, str(message)))

    def node(self, node: Any, path: str, depth: int) -> dict[str, Any] | None:
        if not isinstance(node, dict):
            self.fail(path, _("expected an object: a group or a rule"))
            return None
        if "match" in node or "rules" in node:
            return self.group(node, path, depth)
        if "field" in node:
            return self.rule(node, path)
        self.fail(path, _("expected a group (match, rules) or a rule (field, operator, value)"))
        return None

    def group(self, node: dict[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        unknown = set(node) - GROUP_KEYS
        if unknown:
            self.fail(path, _("unknown keys: %(keys)s") % {"keys": ", ".join(sorted(unknown))})
        match = node.get("match", "all")
        if match not in ("all", "any"):
            self.fail(_join(path, "match"), _('expected "all" or "any"'))
        negate = node.get("negate", False)
        if not isinstance(negate, bool):
            self.fail(_join(path, "negate"), _("expected true or false"))
        if depth > MAX_DEPTH:
            self.fail(path, _("groups nest at most %(n)s deep") % {"n": MAX_DEPTH})
            return None
        children = node.get("rules", [])
        if not isinstance(children, list):
            self.fail(_join(path, "rules"), _("expected a list"))
            return None
        rules = []
        for index, child in enumerate(children):
            done = self.node(child, _join(_join(path, "rules"), index), depth + 1)
            if done is not None:
                rules.append(done)
        return {"match": match, "negate": bool(negate), "rules": rules}

    def rule(self, node: dict[str, Any], path: str) -> dict[str, Any] | None:
        self.count += 1
        if self.count == MAX_RULES + 1:
            self.fail(path, _("at most %(n)s rules in a segment") % {"n": MAX_RULES})
        key = node.get("field")
        spec = FIELDS.get(key) if isinstance(key, str) else None
        if spec is None:
            self.fail(_join(path, "field"), _("unknown field %(field)r") % {"field": key})
            return None
        unknown = set(node) - RULE_KEYS - {p.name for p in spec.params}
        if unknown:
            self.fail(path, _("unknown keys: %(keys)s") % {"keys": ", ".join(sorted(unknown))})
        op_key = node.get("operator")
        if op_key not in spec.operators:
            self.fail(
                _join(path, "operator"),
                _("%(field)s: unknown operator %(op)r; expected one of: %(allowed)s")
                % {"field": key, "op": op_key, "allowed": ", ".join(spec.operators)},
            )
            return None
        out: dict[str, Any] = {"field": key, "operator": op_key}
        value = self.value(spec, op_key, node.get("value"), _join(path, "value"))
        if value is not _MISSING:
            out["value"] = value
        for param in spec.params:
            done = self.param(spec, param, node.get(param.name), _join(path, param.name))
            if done is not None:
                out[param.name] = done
        negate = node.get("negate", False)
        if not isinstance(negate, bool):
            self.fail(_join(path, "negate"), _("expected true or false"))
        out["negate"] = bool(negate)
        return out

    def one(self, spec: Field, op_key: str, value: Any, path: str) -> Any:
        vtype = OPERATORS[op_key].value_type or spec.type
        if op_key == "in_month":
            return _as_int(value, low=1, high=12)
        if vtype == INT:
            high = spec.max_value if op_key != "in_last_days" else MAX_PERIOD_DAYS
            if op_key == "more_than_days_ago":
                high = MAX_PERIOD_DAYS * 10
            return _as_int(value, low=spec.min_value, high=high)
        if vtype == DECIMAL:
            return _as_decimal(value)
        if vtype == STRING:
            return _as_string(value)
        if vtype == CHOICE:
            return _as_choice(value, spec.choices)
        if vtype == REF:
            ref_id = _as_int(value, low=1)
            assert spec.ref is not None
            self.refs[spec.ref].setdefault(ref_id, path)
            return ref_id
        if vtype == DATE:
            return _as_date(value)
        if vtype == SCALAR:
            if op_key in ("gt", "gte", "lt", "lte") and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise _Invalid(_("expected a number"))
            return _as_scalar(value)
        raise _Invalid(_("this field takes no value"))  # pragma: no cover - catalog bug

    def value(self, spec: Field, op_key: str, value: Any, path: str) -> Any:
        arity = OPERATORS[op_key].arity
        try:
            if arity == NONE:
                if value not in (None, "", []):
                    raise _Invalid(_("this operator takes no value"))
                return _MISSING
            if value is None or value == "" or value == []:
                raise _Invalid(_("a value is required"))
            if arity == ONE:
                return self.one(spec, op_key, value, path)
            if arity == TWO:
                if not isinstance(value, list) or len(value) != 2:
                    raise _Invalid(_("expected a list of two values [from, to]"))
                low, high = (
                    self.item(spec, op_key, item, _join(path, i)) for i, item in enumerate(value)
                )
                if _MISSING not in (low, high) and _sort_key(spec, low) > _sort_key(spec, high):
                    raise _Invalid(_("the first value must not exceed the second"))
                return [low, high]
            if arity == MANY:
                if not isinstance(value, list):
                    value = [value]
                if len(value) > MAX_LIST:
                    raise _Invalid(_("at most %(n)s values") % {"n": MAX_LIST})
                items = [
                    self.item(spec, op_key, item, _join(path, i)) for i, item in enumerate(value)
                ]
                return list(dict.fromkeys(i for i in items if i is not _MISSING))
        except _Invalid as exc:
            self.fail(path, exc.message)
        return _MISSING

    def item(self, spec: Field, op_key: str, value: Any, path: str) -> Any:
        try:
            return self.one(spec, op_key, value, path)
        except _Invalid as exc:
            self.fail(path, exc.message)
            return _MISSING

    def param(self, spec: Field, param: Param, value: Any, path: str) -> Any:
        if value is None or value == [] or value == "":
            if param.required:
                self.fail(path, _("%(param)s is required") % {"param": param.label})
            return param.default
        try:
            if param.type == PERIOD:
                return _as_period(value, path, self.errors)
            if param.type == BOOL:
                return _as_bool(value)
            if param.type == STRING:
                text = _as_string(value)
                if param.name == "key" and not ATTRIBUTE_KEY.match(text):
                    raise _Invalid(_("a key is letters, digits and _, starting with a letter"))
                return text
            if param.type == CHOICE:
                return _as_choice(value, param.choices)
            if param.type == REF:
                values = value if isinstance(value, list) else [value]
                ids = list(dict.fromkeys(_as_int(v, low=1) for v in values))
                assert param.ref is not None
                for ref_id in ids:
                    self.refs[param.ref].setdefault(ref_id, path)
                return ids
        except _Invalid as exc:
            self.fail(path, exc.message)
        return None


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _sort_key(spec: Field, value: Any) -> Any:
    if spec.type == DECIMAL:
        return Decimal(value)
    return value


def validate_rules(rules: Any, *, segment_id: int | None = None) -> dict[str, Any]:
    """Check a rule tree against the catalog and return it normalized; raise ``RulesError``.

    Referenced rows (categories, brands, products, tiers, interests, segments) must exist (one
    query per referenced model), and a segment must not refer to itself through others.
    """
    if rules in (None, "", {}):
        rules = {"match": "all", "rules": []}
    validator = _Validator()
    if not isinstance(rules, dict) or "field" in rules:
        raise RulesError(
            [("", gettext('the rules must be a group: {"match": ..., "rules": [...]}'))]
        )
    tree = validator.group(rules, "", 0)
    if not validator.errors:
        _check_refs(validator, segment_id)
    if validator.errors:
        raise RulesError(validator.errors)
    assert tree is not None
    return tree


def _check_refs(validator: _Validator, segment_id: int | None) -> None:
    models = ref_models()
    for ref, wanted in validator.refs.items():
        model = models[ref]()
        found = set(model.objects.filter(pk__in=list(wanted)).values_list("pk", flat=True))
        for ref_id, path in wanted.items():
            if ref_id not in found:
                validator.fail(
                    path,
                    _("no %(model)s with id %(id)s")
                    % {"model": model._meta.verbose_name, "id": ref_id},
                )
    segment_refs = validator.refs.get("segment", {})
    if segment_refs:
        for ref_id, path in segment_refs.items():
            if segment_id is not None and _reaches(ref_id, segment_id):
                validator.fail(
                    path,
                    _("segment %(id)s refers back to this segment (a cycle)") % {"id": ref_id},
                )


def _reaches(start: int, target: int) -> bool:
    """Whether segment ``start`` is ``target`` or refers to it through segment rules."""
    from segments.models import Segment

    seen: set[int] = set()
    frontier = {start}
    for _depth in range(50):
        if target in frontier:
            return True
        frontier -= seen
        if not frontier:
            return False
        seen |= frontier
        refs: set[int] = set()
        for rules in Segment.objects.filter(pk__in=frontier, kind="rules").values_list(
            "rules", flat=True
        ):
            refs |= set(segment_refs(rules))
        frontier = refs
    return True  # deeper than any sane tree: treat as a cycle


def iter_rules(tree: Any) -> Iterator[dict[str, Any]]:
    """Every rule (not group) of a tree, depth first."""
    if not isinstance(tree, dict):
        return
    if "field" in tree:
        yield tree
        return
    for child in tree.get("rules", []) or []:
        yield from iter_rules(child)


def segment_refs(tree: Any) -> list[int]:
    return [
        int(v)
        for rule in iter_rules(tree)
        if rule.get("field") == "segment"
        for v in (rule.get("value") or [])
        if isinstance(v, int)
    ]


# Explanation ------------------------------------------------------------------------------------


def _ref_names(tree: dict[str, Any]) -> dict[str, dict[int, str]]:
    wanted: dict[str, set[int]] = defaultdict(set)
    for rule in iter_rules(tree):
        spec = FIELDS.get(rule.get("field", ""))
        if spec is None:
            continue
        if spec.ref:
            value = rule.get("value")
            wanted[spec.ref].update(v for v in (value if isinstance(value, list) else [value]) if v)
        for param in spec.params:
            if param.ref and rule.get(param.name):
                wanted[param.ref].update(rule[param.name])
    models = ref_models()
    names: dict[str, dict[int, str]] = {}
    for ref, ids in wanted.items():
        model = models[ref]()
        names[ref] = {obj.pk: str(obj) for obj in model.objects.filter(pk__in=ids)}
    return names


def explain_rules(tree: dict[str, Any]) -> str:
    """The rules in plain words of the active language, e.g. "bought in category «Pet food»
    in the last 30 days AND has a valid consent (SMS, marketing)"."""
    names = _ref_names(tree)
    text = _explain_node(tree, names, top=True)
    return text or gettext("all clients")


def _explain_node(node: dict[str, Any], names: dict[str, dict[int, str]], top: bool = False) -> str:
    if "field" in node:
        text = _explain_rule(node, names)
        return gettext("NOT %(condition)s") % {"condition": text} if node.get("negate") else text
    parts = [_explain_node(child, names) for child in node.get("rules", [])]
    parts = [p for p in parts if p]
    if not parts:
        text = gettext("all clients")
    else:
        joiner = (
            " " + (gettext("AND") if node.get("match", "all") == "all" else gettext("OR")) + " "
        )
        text = joiner.join(parts)
        if not top and len(parts) > 1:
            text = f"({text})"
    if node.get("negate"):
        return gettext("NOT (%(condition)s)") % {"condition": text.strip("()")}
    return text


def _fmt(spec: Field, value: Any, names: dict[str, dict[int, str]], ref: str | None = None) -> str:
    ref = ref or spec.ref
    if ref:
        return f"«{names.get(ref, {}).get(value, f'#{value}')}»"
    if spec.choices:
        labels = dict(spec.choices)
        if value in labels:
            return str(labels[value])
    if isinstance(value, str) and spec.type in (STRING, SCALAR):
        return f"«{value}»"
    return str(value)


def _explain_period(period: dict[str, Any] | None) -> str:
    if not period:
        return ""
    if "last_days" in period:
        return gettext("in the last %(n)s days") % {"n": period["last_days"]}
    if "last_hours" in period:
        return gettext("in the last %(n)s hours") % {"n": period["last_hours"]}
    if "from" in period and "to" in period:
        return gettext("from %(start)s to %(end)s") % {"start": period["from"], "end": period["to"]}
    if "from" in period:
        return gettext("since %(start)s") % {"start": period["from"]}
    return gettext("until %(end)s") % {"end": period["to"]}


def _explain_rule(rule: dict[str, Any], names: dict[str, dict[int, str]]) -> str:
    spec = FIELDS[rule["field"]]
    op = OPERATORS[rule["operator"]]
    value: Any = rule.get("value")  # its shape is the operator's (checked on save)
    label = str(spec.label)
    if rule["field"] == "attribute":
        label = gettext("attribute «%(key)s»") % {"key": rule.get("key", "")}
    if op.arity == NONE:
        text = label if op.key in ("yes",) else f"{label} {op.label}"
        if op.key == "no":
            text = gettext("NOT %(condition)s") % {"condition": label}
    elif op.key in ("any_of", "all_of", "none_of"):
        glue = " " + (gettext("and") if op.key == "all_of" else gettext("or")) + " "
        listed = glue.join(_fmt(spec, v, names) for v in value)
        text = f"{label} {listed}"
        if op.key == "none_of":
            text = gettext("NOT %(condition)s") % {"condition": text}
    elif op.key in ("in", "not_in"):
        listed = ", ".join(_fmt(spec, v, names) for v in value)
        verb = (
            (gettext("is") if op.key == "in" else gettext("is not"))
            if len(value) == 1
            else str(op.label)
        )
        text = f"{label} {verb} {listed}"
    elif op.key == "between":
        text = gettext("%(field)s is between %(low)s and %(high)s") % {
            "field": label,
            "low": _fmt(spec, value[0], names),
            "high": _fmt(spec, value[1], names),
        }
    elif op.key == "in_last_days":
        text = gettext("%(field)s is within the last %(n)s days") % {"field": label, "n": value}
    elif op.key == "more_than_days_ago":
        text = gettext("%(field)s is more than %(n)s days ago") % {"field": label, "n": value}
    elif op.key == "in_next_days":
        text = (
            gettext("%(field)s is today") % {"field": label}
            if value == 0
            else gettext("%(field)s is within the next %(n)s days") % {"field": label, "n": value}
        )
    elif op.key == "in_month":
        months = dict(spec.extra["choices_for"]["in_month"])
        text = gettext("%(field)s is in %(month)s") % {"field": label, "month": months[str(value)]}
    else:
        text = f"{label} {op.label} {_fmt(spec, value, names)}"
    details = []
    if rule["field"] == "consent":
        channel = rule.get("channel", "")
        purpose = rule.get("purpose", "")
        channel = dict(spec.params[0].choices).get(channel, channel)
        purpose = dict(spec.params[1].choices).get(purpose, purpose)
        details.append(f"({channel}, {purpose})")
    if rule["field"] == "event":
        event_type = dict(spec.params[0].choices).get(rule.get("event_type", ""))
        details.append(f"«{event_type}»")
        for param in ("product", "category"):
            if rule.get(param):
                p = spec.param(param)
                assert p is not None
                listed = (" " + gettext("or") + " ").join(
                    _fmt(spec, v, names, ref=p.ref) for v in rule[param]
                )
                details.append(f"{p.label} {listed}")
    if rule["field"] == "days_since_last_purchase" and rule.get("category"):
        listed = (" " + gettext("or") + " ").join(
            _fmt(spec, v, names, ref="category") for v in rule["category"]
        )
        details.append(gettext("in category %(names)s") % {"names": listed})
    period = _explain_period(rule.get("period"))
    if period:
        details.append(period)
    if rule.get("no_purchase_since"):
        details.append(gettext("and no purchase since"))
    if details:
        if op.key == "no" and rule["field"] in ("consent", "event", "bought_private_label"):
            text = gettext("NOT %(condition)s") % {"condition": f"{label} {' '.join(details)}"}
        else:
            text = f"{text} {' '.join(details)}"
    return text
