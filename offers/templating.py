"""Sandboxed message templates: Django template syntax over a small, documented context.

Templates are rendered by a dedicated ``django.template.Engine`` with no loaders, no default
tags or filters and no ``{% load %}``: only the tags and filters in ``offers/template_library.py``.
The context holds plain dicts, lists, strings, numbers and dates, never a model, so no model
method or manager is reachable. Every template is checked before it is saved and again (cached)
before it is rendered: syntax, disallowed tags, unknown variables and any attribute outside the
documented context are refused with a clear message.

The context of a message template (``MESSAGE_CONTEXT``)::

    client.first_name, client.middle_name, client.last_name, client.full_name,
    client.name (first and middle name: "Анна Сергеевна"), client.city, client.gender
    product.name, .brand, .category, .price, .price_with_benefit, .sku  (the first product)
    products  (a list of such products; {% for p in products %}{{ p.name }}{% endfor %})
    benefit.kind, benefit.value, benefit.text  ("скидка 10%")
    promo_code, valid_until (a date), tier, points, store, reason, offer.name

A reason template sees ``fact`` (``FACT_KEYS``), ``client``, ``product`` and ``products``.
Filters: see ``offers/template_library.py`` (``ru_plural``, ``money`` plus safe built-ins).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any, ClassVar

from django.template import Context, Engine, Template, TemplateSyntaxError
from django.template.base import (
    FilterExpression,
    Lexer,
    Node,
    TextNode,
    TokenType,
    Variable,
    VariableNode,
    render_value_in_context,
)
from django.template.defaulttags import ForNode, IfNode, TemplateLiteral, WithNode
from django.template.smartif import TokenBase
from django.utils.translation import get_language
from django.utils.translation import gettext as _

ALLOWED_TAGS = ("if", "for", "with", "firstof", "now", "comment", "spaceless")
CLOSING_TAGS = ("elif", "else", "endif", "empty", "endfor", "endwith", "endcomment", "endspaceless")


class ListOf:
    def __init__(self, item: Any) -> None:
        self.item = item


SCALAR = None
PRODUCT_SCHEMA = {
    "name": SCALAR,
    "brand": SCALAR,
    "category": SCALAR,
    "price": SCALAR,
    "price_with_benefit": SCALAR,
    "sku": SCALAR,
}
CLIENT_SCHEMA = {
    "first_name": SCALAR,
    "middle_name": SCALAR,
    "last_name": SCALAR,
    "full_name": SCALAR,
    "name": SCALAR,
    "city": SCALAR,
    "gender": SCALAR,
}
MESSAGE_CONTEXT: dict[str, Any] = {
    "client": CLIENT_SCHEMA,
    "product": PRODUCT_SCHEMA,
    "products": ListOf(PRODUCT_SCHEMA),
    "benefit": {"kind": SCALAR, "value": SCALAR, "text": SCALAR},
    "promo_code": SCALAR,
    "valid_until": SCALAR,
    "tier": SCALAR,
    "points": SCALAR,
    "store": SCALAR,
    "reason": SCALAR,
    "offer": {"name": SCALAR},
}
FACT_KEYS = (
    "product",  # the product the fact is about ("Сухой корм для кошек Whiskas ...")
    "category",  # its category ("Корм для кошек")
    "brand",
    "days_since",  # days since the client last bought it
    "interval_days",  # the client's usual interval between purchases
    "last_date",  # the date of that purchase
    "target",  # cross-sell: what goes with it (a category or a product)
    "count",  # how many times the client bought it / the category
)
REASON_CONTEXT: dict[str, Any] = {
    "fact": {key: SCALAR for key in FACT_KEYS},
    "client": CLIENT_SCHEMA,
    "product": PRODUCT_SCHEMA,
    "products": ListOf(PRODUCT_SCHEMA),
}
FORLOOP_SCHEMA = {
    "counter": SCALAR,
    "counter0": SCALAR,
    "revcounter": SCALAR,
    "revcounter0": SCALAR,
    "first": SCALAR,
    "last": SCALAR,
}


class SandboxEngine(Engine):
    """An engine without Django's default tags, filters and loader tags."""

    default_builtins: ClassVar[list[str]] = []


PLAIN_ENGINE = SandboxEngine(loaders=[], builtins=["offers.template_library"], autoescape=False)
HTML_ENGINE = SandboxEngine(loaders=[], builtins=["offers.template_library"], autoescape=True)


class TemplateCheckError(Exception):
    """A template was refused; ``messages`` say why, in the user's language."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class CheckedTemplate:
    template: Template
    variables: frozenset[str] = field(default_factory=frozenset)  # dotted paths used
    # Text and variables only (most message templates): rendered without the node machinery,
    # with filter results on constant arguments memoized (all allowed filters are pure).
    parts: tuple[Any, ...] | None = None
    memo: dict[Any, str] = field(default_factory=dict, compare=False, repr=False)


def _fast_parts(template: Template) -> tuple[Any, ...] | None:
    """Text and ``{{ variables }}`` only: text, or (index, lookups, filter expression, whether
    it has filters, whether their arguments are constants)."""
    if template.engine.autoescape:
        return None
    parts: list[Any] = []
    for index, node in enumerate(template.nodelist):
        if isinstance(node, TextNode):
            parts.append(node.s)
        elif isinstance(node, VariableNode):
            fe = node.filter_expression
            var = fe.var
            if not isinstance(var, Variable) or var.lookups is None or var.translate:
                return None
            constant_args = all(not is_lookup for _f, args in fe.filters for is_lookup, _a in args)
            parts.append((index, var.lookups, fe, bool(fe.filters), constant_args))
        else:
            return None
    return tuple(parts)


def _tag_errors(source: str) -> list[str]:
    errors = []
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.TEXT and (
            "{{" in token.contents or "{%" in token.contents
        ):
            errors.append(
                _("Template syntax error: an unclosed “{{” or “{%%” near “%s”.")
                % token.contents.strip()[:40]
            )
            continue
        if token.token_type != TokenType.BLOCK:
            continue
        name = token.contents.split()[0] if token.contents.split() else ""
        if name not in ALLOWED_TAGS and name not in CLOSING_TAGS:
            errors.append(
                _("The tag {%% %(tag)s %%} is not allowed; allowed tags: %(allowed)s.")
                % {"tag": name, "allowed": ", ".join(ALLOWED_TAGS)}
            )
    return errors


class _Checker:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.errors: list[str] = []
        self.used: set[str] = set()

    def variable(self, var: Any, scope: dict[str, Any]) -> Any:
        """Check one Variable; return the schema of what it resolves to (or SCALAR)."""
        if not isinstance(var, Variable) or var.lookups is None:
            return SCALAR
        lookups = var.lookups
        name = lookups[0]
        if name not in scope:
            self.errors.append(
                _("Unknown variable “%(name)s”; available: %(available)s.")
                % {"name": var.var, "available": ", ".join(sorted(k for k in scope))}
            )
            return SCALAR
        schema = scope[name]
        path = [name]
        for bit in lookups[1:]:
            if isinstance(schema, ListOf) and bit.isdigit():
                schema = schema.item
            elif isinstance(schema, dict) and bit in schema:
                schema = schema[bit]
            else:
                self.errors.append(
                    _("“%(path)s” has no attribute “%(bit)s”%(hint)s.")
                    % {
                        "path": ".".join(path),
                        "bit": bit,
                        "hint": (
                            _("; available: %s") % ", ".join(sorted(schema))
                            if isinstance(schema, dict)
                            else ""
                        ),
                    }
                )
                return SCALAR
            path.append(bit)
        self.used.add(".".join(path))
        return schema

    def expression(self, expr: Any, scope: dict[str, Any]) -> Any:
        if isinstance(expr, FilterExpression):
            schema = self.variable(expr.var, scope)
            for _func, args in expr.filters:
                for is_lookup, arg in args:
                    if is_lookup:
                        self.variable(arg, scope)
            return schema if not expr.filters else SCALAR
        if isinstance(expr, TemplateLiteral):
            return self.expression(expr.value, scope)
        if isinstance(expr, TokenBase):
            for part in (getattr(expr, "first", None), getattr(expr, "second", None)):
                if part is not None:
                    self.expression(part, scope)
        return SCALAR

    def nodes(self, nodelist: Any, scope: dict[str, Any]) -> None:
        for node in nodelist:
            self.node(node, scope)

    def node(self, node: Node, scope: dict[str, Any]) -> None:
        if isinstance(node, ForNode):
            item = self.expression(node.sequence, scope)
            inner = dict(scope)
            if len(node.loopvars) == 1 and isinstance(item, ListOf):
                inner[node.loopvars[0]] = item.item
            else:
                inner.update({name: SCALAR for name in node.loopvars})
            inner["forloop"] = FORLOOP_SCHEMA
            self.nodes(node.nodelist_loop, inner)
            self.nodes(node.nodelist_empty, scope)
            return
        if isinstance(node, WithNode):
            inner = dict(scope)
            for name, expr in node.extra_context.items():
                inner[name] = self.expression(expr, scope)
            self.nodes(node.nodelist, inner)
            return
        if isinstance(node, IfNode):
            for condition, nodelist in node.conditions_nodelists:
                if condition is not None:
                    self.expression(condition, scope)
                self.nodes(nodelist, scope)
            return
        for value in vars(node).values():
            if isinstance(value, FilterExpression):
                self.expression(value, scope)
            elif isinstance(value, list | tuple):
                for item in value:
                    if isinstance(item, FilterExpression):
                        self.expression(item, scope)
        for attr in node.child_nodelists:
            self.nodes(getattr(node, attr, None) or [], scope)


def _asvar_names(source: str) -> set[str]:
    return set(re.findall(r"{%\s*(?:now|firstof)\b[^%]*\bas\s+(\w+)\s*%}", source))


def check_template(source: str, *, context: dict[str, Any], html: bool = False) -> CheckedTemplate:
    """Compile and check a template; ``TemplateCheckError`` lists every problem found."""
    errors = _tag_errors(source)
    if errors:
        raise TemplateCheckError(errors)
    engine = HTML_ENGINE if html else PLAIN_ENGINE
    try:
        template = engine.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateCheckError([_("Template syntax error: %s") % exc]) from exc
    checker = _Checker(context)
    scope = dict(context)
    scope.update({name: SCALAR for name in _asvar_names(source)})
    checker.nodes(template.nodelist, scope)
    if checker.errors:
        raise TemplateCheckError(list(dict.fromkeys(checker.errors)))
    return CheckedTemplate(template, frozenset(checker.used), _fast_parts(template))


@lru_cache(maxsize=512)
def _compiled(source: str, kind: str) -> CheckedTemplate:
    context = REASON_CONTEXT if kind == "reason" else MESSAGE_CONTEXT
    return check_template(source, context=context, html=kind == "html")


def compile_message_template(source: str, *, html: bool = False) -> CheckedTemplate:
    return _compiled(source, "html" if html else "text")


def compile_reason_template(source: str) -> CheckedTemplate:
    return _compiled(source, "reason")


def render(
    checked: CheckedTemplate, context: dict[str, Any], *, language: str | None = None
) -> str:
    """Render a checked template with plain data; whitespace runs collapse to one space.
    ``language``: the active language when the caller already knows it (a batch asks once)."""
    text = _render_fast(checked, context, language) if checked.parts is not None else None
    if text is None:
        text = checked.template.render(
            Context(context, autoescape=checked.template.engine.autoescape)
        )
    if "  " in text or "\t" in text:
        text = _SPACES.sub(" ", text)
    return text.strip()


_MISSING = object()
# Values whose rendering depends only on the value, its type and the language (not on the
# time zone, as a datetime's does): safe to memoize.
_MEMO_TYPES = frozenset({str, int, float, bool, Decimal, dt.date, type(None)})


def _render_fast(
    checked: CheckedTemplate, context: dict[str, Any], language: str | None
) -> str | None:
    """Text-and-variables templates without Django's ``Context``: values are looked up in the
    plain data (dicts and lists); what a value renders to (localized, through its filters) is
    memoized per part, type, value and language, since every allowed filter is pure. None when
    a value needs Django's own resolution (anything but dicts and lists on the way)."""
    out: list[str] = []
    memo = checked.memo
    language = language or get_language()
    ctx: Context | None = None
    for part in checked.parts or ():
        if part.__class__ is str:
            out.append(part)
            continue
        index, lookups, fe, filtered, constant_args = part
        value: Any = context
        for bit in lookups:
            if value.__class__ is dict:
                value = value.get(bit, _MISSING)
            elif value.__class__ is list and bit.isdigit() and int(bit) < len(value):
                value = value[int(bit)]
            else:
                return None
            if value is _MISSING or callable(value):
                return None
        cls = value.__class__
        if cls is str and not filtered:
            out.append(value)
            continue
        key = (
            (index, cls, value, language)
            if cls in _MEMO_TYPES and (constant_args or not filtered)
            else None
        )
        if key is not None:
            text = memo.get(key)
            if text is not None:
                out.append(text)
                continue
        if ctx is None:
            ctx = Context(context, autoescape=False)
        resolved = fe.resolve(ctx) if filtered else value
        text = resolved if isinstance(resolved, str) else render_value_in_context(resolved, ctx)
        if key is not None and len(memo) < 10_000:
            memo[key] = text
        out.append(text)
    return "".join(out)


def render_html(checked: CheckedTemplate, context: dict[str, Any]) -> str:
    return checked.template.render(Context(context, autoescape=True)).strip()


_SPACES = re.compile(r"[ \t]+")

# Structure check --------------------------------------------------------------------------------

_CALL_TO_ACTION = re.compile(
    r"(приходите|заходите|закажите|заказывайте|покажите|назовите|позвоните|звоните|переходите|"
    r"перейдите|успейте|купите|покупайте|ждём|ждем|используйте|примените|оформите|скажите|"
    r"нажмите|ответьте|http|www\.|come|order|buy|call|visit|use)",
    re.IGNORECASE,
)
_DEADLINE = re.compile(r"(\bдо\s+\d|\bдо\s+конца|\bтолько\s+(до|сегодня)|\buntil\b)", re.I)


def structure_warnings(source: str, used: frozenset[str]) -> list[str]:
    """What works in practice: the name, the product, the value, the deadline, the call to
    action. Missing ones are warnings, not errors."""
    if not source.strip():
        return []
    warnings = []
    if not any(path.startswith("client.") and "name" in path for path in used):
        warnings.append(_("The text does not greet the client by name ({{ client.first_name }})."))
    if "valid_until" not in used and not _DEADLINE.search(source):
        warnings.append(_("The text has no deadline ({{ valid_until }})."))
    if "promo_code" not in used and not _CALL_TO_ACTION.search(source):
        warnings.append(_("The text has no call to action (come, order, show the code...)."))
    return warnings
