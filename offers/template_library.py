"""The only tags and filters message templates may use (see ``offers/templating.py``).

Tags: if, for, with, firstof, now, comment, spaceless. Filters: a whitelist of Django's safe
text, number and date filters, plus ``ru_plural`` ("{{ n }} {{ n|ru_plural:'день,дня,дней' }}")
and ``money`` ("1 290 ₽"). No ``safe``, ``load``, ``include``, ``extends`` or ``debug``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.template import Library, defaultfilters, defaulttags

register = Library()

for _tag in ("comment", "firstof", "now", "spaceless"):
    register.tag(_tag, getattr(defaulttags, _tag))
register.tag("if", defaulttags.do_if)
register.tag("for", defaulttags.do_for)
register.tag("with", defaulttags.do_with)

SAFE_FILTERS = (
    "add",
    "capfirst",
    "cut",
    "date",
    "default",
    "default_if_none",
    "first",
    "floatformat",
    "join",
    "last",
    "length",
    "linebreaksbr",
    "lower",
    "pluralize",
    "slice",
    "stringformat",
    "time",
    "title",
    "truncatechars",
    "truncatewords",
    "upper",
    "yesno",
)
for _name in SAFE_FILTERS:
    register.filter(_name, defaultfilters.register.filters[_name])


def plural_form(number: int, forms: tuple[str, str, str]) -> str:
    """The Russian form for a number: 1 день, 2 дня, 5 дней (also 11-14 дней, 21 день)."""
    n = abs(number)
    if n % 10 == 1 and n % 100 != 11:
        return forms[0]
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return forms[1]
    return forms[2]


@register.filter
def ru_plural(value: Any, forms: str) -> str:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return ""
    parts = [p.strip() for p in str(forms).split(",")]
    if len(parts) != 3:
        return ""
    return plural_form(number, (parts[0], parts[1], parts[2]))


@register.filter
def money(value: Any) -> str:
    """Roubles with thin grouping and no kopecks when whole: 1 290 ₽, 99,50 ₽."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return ""
    whole = amount == amount.to_integral_value()
    text = f"{amount:,.0f}" if whole else f"{amount:,.2f}"
    return text.replace(",", "\u00a0").replace(".", ",") + "\u00a0₽"
