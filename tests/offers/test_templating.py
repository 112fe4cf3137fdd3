"""The template sandbox: syntax, tags, variables and attributes outside the context are refused;
rendering reaches plain data only; structure warnings."""

from __future__ import annotations

import datetime as dt

import pytest

from offers.templating import (
    TemplateCheckError,
    compile_message_template,
    compile_reason_template,
    render,
    render_html,
    structure_warnings,
)

CONTEXT = {
    "client": {"first_name": "Анна", "name": "Анна Сергеевна"},
    "product": {"name": "Корм Hill's", "price": 1290},
    "products": [{"name": "Корм Hill's", "price": 1290}, {"name": "Паучи", "price": 45}],
    "benefit": {"text": "скидка 10%"},
    "promo_code": "LX-AB12",
    "valid_until": dt.date(2026, 3, 1),
    "points": 1500,
}


def _refused(source: str, **kwargs) -> list[str]:
    with pytest.raises(TemplateCheckError) as caught:
        compile_message_template(source, **kwargs)
    return caught.value.messages


def test_render_with_loops_filters_and_plural():
    checked = compile_message_template(
        "{{ client.first_name }}, {{ benefit.text }}: {% for p in products %}{{ p.name }} "
        "{{ p.price|money }}{% if not forloop.last %}, {% endif %}{% endfor %}. "
        "{{ points }} {{ points|ru_plural:'балл,балла,баллов' }}. До {{ valid_until|date:'d.m' }}"
    )
    assert render(checked, CONTEXT) == (
        "Анна, скидка 10%: Корм Hill's 1\u00a0290\u00a0₽, Паучи 45\u00a0₽. 1500 баллов. До 01.03"
    )


def test_plain_text_is_not_html_escaped_but_email_body_is():
    assert render(compile_message_template("{{ product.name }}"), CONTEXT) == "Корм Hill's"
    html = compile_message_template("<b>{{ product.name }}</b>", html=True)
    assert render_html(html, CONTEXT) == "<b>Корм Hill&#x27;s</b>"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{% load static %}", "The tag {% load %} is not allowed"),
        ("{% include 'admin/base.html' %}", "The tag {% include %} is not allowed"),
        ("{% extends 'admin/base.html' %}", "The tag {% extends %} is not allowed"),
        ("{% debug %}", "The tag {% debug %} is not allowed"),
        ("{% csrf_token %}", "The tag {% csrf_token %} is not allowed"),
        ("{{ clinet.first_name }}", "Unknown variable “clinet.first_name”"),
        ("{{ settings.SECRET_KEY }}", "Unknown variable “settings.SECRET_KEY”"),
        ("{{ client.first_name.upper }}", "“client.first_name” has no attribute “upper”"),
        ("{{ client.items }}", "“client” has no attribute “items”"),
        ("{{ client.__class__ }}", "Variables and attributes may not begin with underscores"),
        ("{{ client._meta }}", "Variables and attributes may not begin with underscores"),
        ("{% for p in products %}{{ p.cost }}{% endfor %}", "“p” has no attribute “cost”"),
        ("{{ x|safe }}", "Invalid filter: 'safe'"),
        ("{{ client.first_name|default:client.password }}", "has no attribute “password”"),
        ("{% if client.secret %}{% endif %}", "“client” has no attribute “secret”"),
        ("{{ client.first_name ", "Template syntax error"),
        ("{% if %}x{% endif %}", "Template syntax error"),
    ],
)
def test_refused_with_a_clear_message(source, message):
    messages = _refused(source)
    assert any(message in m for m in messages), messages


def test_reason_templates_see_facts_not_the_message_context():
    checked = compile_reason_template("Вы покупали {{ fact.product }} {{ fact.days_since }} дн.")
    assert render(checked, {"fact": {"product": "корм", "days_since": 28}}) == (
        "Вы покупали корм 28 дн."
    )
    with pytest.raises(TemplateCheckError):
        compile_reason_template("{{ promo_code }}")
    with pytest.raises(TemplateCheckError):
        compile_reason_template("{{ fact.password }}")


def test_structure_warnings():
    good = "{{ client.first_name }}, скидка до {{ valid_until }}. Покажите код {{ promo_code }}"
    assert structure_warnings(good, compile_message_template(good).variables) == []
    bare = "Скидка 10%"
    assert structure_warnings(bare, compile_message_template(bare).variables) == [
        "The text does not greet the client by name ({{ client.first_name }}).",
        "The text has no deadline ({{ valid_until }}).",
        "The text has no call to action (come, order, show the code...).",
    ]
