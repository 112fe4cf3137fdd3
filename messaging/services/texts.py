"""Texts of messages that campaigns and trigger scenarios write themselves (no offer), and the
conversion of the offer engine's proposals into planning candidates."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from crm.models import Channel
from messaging.services.planning import Candidate
from offers.engine import Proposal
from offers.templating import CheckedTemplate, compile_message_template, render, render_html

Templates = dict[str, tuple[CheckedTemplate | None, CheckedTemplate]]


def plain_templates(
    *,
    sms: str = "",
    voice: str = "",
    email_subject: str = "",
    email_body: str = "",
    channels: Sequence[str],
) -> Templates:
    """The sandboxed templates of the given channels that have a text, compiled once per run."""
    sources = {
        Channel.SMS: ("", sms),
        Channel.CALL: ("", voice),
        Channel.EMAIL: (email_subject, email_body),
    }
    templates: Templates = {}
    for channel in channels:
        if channel not in Channel.values:
            continue
        subject, body = sources[Channel(channel)]
        if not body.strip():
            continue
        templates[channel] = (
            compile_message_template(subject) if subject else None,
            compile_message_template(body, html=channel == Channel.EMAIL),
        )
    return templates


def render_texts(templates: Templates, context: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Each channel's (subject, body) for one client."""
    texts = {}
    for channel, (subject_t, body_t) in templates.items():
        subject = render(subject_t, dict(context)) if subject_t else ""
        body = (
            render_html(body_t, dict(context))
            if channel == Channel.EMAIL
            else render(body_t, dict(context))
        )
        texts[channel] = (subject, body)
    return texts


def json_safe(products: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Products as stored on the message: JSON-safe (prices as strings)."""
    return json.loads(json.dumps(list(products), default=str))


def proposal_candidate(p: Proposal, **extra: Any) -> Candidate:
    """A planning candidate from an offer proposal (texts, reason, products, promo pool)."""
    return Candidate(
        client_id=p.client_id,
        texts={channel: (t.subject, t.text) for channel, t in p.texts.items()},
        offer_id=p.offer_id,
        variant_id=p.variant_id,
        reason=p.reason,
        products=json_safe(p.products),
        expires_at=p.valid_until,
        is_control=p.is_control,
        promo_pool_id=p.promo_pool_id,
        **extra,
    )
