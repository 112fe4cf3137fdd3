"""Use cases that change the client domain.

The one place that writes a client's current consent, a category's path and a purchase item's
denormalized columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import DecimalField, ExpressionWrapper, F, Sum, Value
from django.db.models.functions import Concat, Substr
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from psycopg.types.json import Jsonb

from crm.db.raw import copy_rows
from crm.geo import time_zone_for_city
from crm.models import (
    AuditAction,
    AuditLog,
    Category,
    Channel,
    Client,
    Consent,
    ConsentAction,
    ConsentEvent,
    ConsentPurpose,
    ConsentSource,
    Purchase,
    PurchaseItem,
)

# Audit -----------------------------------------------------------------------------------------


def audit_write(
    *,
    action: str,
    client_id: int | None = None,
    actor: Any = None,
    actor_label: str = "",
    changes: dict[str, Any] | None = None,
) -> AuditLog:
    user, label = _audit_actor(actor, actor_label)
    return AuditLog.objects.create(
        action=action, client_id=client_id, actor=user, actor_label=label, changes=changes or {}
    )


def _audit_actor(actor: Any, actor_label: str) -> tuple[Any, str]:
    """The signed-in user behind an action (or None) and the label the log shows for it."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    return user, actor_label or (user.get_username() if user else "")


def audit_write_many(
    *,
    action: str,
    entries: Iterable[tuple[int | None, dict[str, Any]]],
    actor: Any = None,
    actor_label: str = "",
) -> int:
    """One audit entry per (client id, changes), set-based: COPY on PostgreSQL, batched INSERT
    elsewhere. Returns how many were written."""
    user, label = _audit_actor(actor, actor_label)
    rows = list(entries)
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        now = timezone.now()
        copy_rows(
            AuditLog._meta.db_table,
            ["occurred_at", "actor_id", "actor_label", "action", "client_id", "changes"],
            (
                (now, user.pk if user else None, label, action, client_id, Jsonb(changes))
                for client_id, changes in rows
            ),
        )
    else:
        AuditLog.objects.bulk_create(
            (
                AuditLog(
                    action=action, client_id=client_id, actor=user, actor_label=label, changes=c
                )
                for client_id, c in rows
            ),
            batch_size=2000,
        )
    return len(rows)


# Clients ---------------------------------------------------------------------------------------


def client_save(*, client: Client, actor: Any = None, changed_fields: Iterable[str] = ()) -> Client:
    """Save a client edited by a person: normalize, derive the time zone, audit.

    The time zone follows the city unless the same edit set the time zone explicitly.
    """
    changed = set(changed_fields)
    creating = client.pk is None
    client.email = (client.email or "").strip().lower()
    if (creating or "city" in changed) and "time_zone" not in changed:
        derived = time_zone_for_city(client.city)
        if derived:
            client.time_zone = derived
            changed.add("time_zone")
    client.save()
    audit_write(
        action=AuditAction.CLIENT_CREATED if creating else AuditAction.CLIENT_UPDATED,
        client_id=client.pk,
        actor=actor,
        # Field names only: the audit log must not become a second copy of personal data.
        changes={"fields": sorted(changed)},
    )
    return client


# Consent ---------------------------------------------------------------------------------------


class ConsentError(ValidationError):
    pass


@dataclass(frozen=True)
class ConsentChange:
    client_id: int
    channel: str
    purpose: str
    action: str
    source: str
    wording_version: str
    occurred_at: datetime
    evidence: str = ""
    actor_label: str = ""
    actor_id: int | None = field(default=None)


_VOCABULARIES = {
    "channel": Channel.values,
    "purpose": ConsentPurpose.values,
    "action": ConsentAction.values,
    "source": ConsentSource.values,
}


def _validate_consent_change(change: ConsentChange) -> None:
    for name, allowed in _VOCABULARIES.items():
        value = getattr(change, name)
        if value not in allowed:
            raise ConsentError(
                {
                    name: _("Unknown value %(value)r; expected one of: %(allowed)s.")
                    % {"value": value, "allowed": ", ".join(allowed)}
                }
            )
    if not change.wording_version.strip():
        raise ConsentError({"wording_version": _("The consent wording version is required.")})
    if timezone.is_naive(change.occurred_at):
        raise ConsentError({"occurred_at": _("The time must include a time zone.")})
    if change.occurred_at > timezone.now() + timedelta(minutes=5):
        raise ConsentError({"occurred_at": _("Consent cannot be recorded in the future.")})


# Called inside the recording transaction with the withdrawal events, after the state is
# written: apps further up (messaging) register here to cancel what was queued on a consent,
# so a withdrawal takes effect at once (DESIGN invariant 1) without crm depending on them.
CONSENT_WITHDRAWAL_HANDLERS: list[Callable[[Sequence[ConsentEvent]], None]] = []


def consent_record_many(*, changes: Sequence[ConsentChange]) -> list[ConsentEvent]:
    """Append consent events and bring the current state up to date, in two statements.

    The current state per (client, channel, purpose) is the latest event by (occurred_at, id).
    The upsert only ever moves a state forward in that order, so an older event arriving late
    (an import, an out-of-order webhook) or a concurrent writer never overwrites a newer one.
    """
    if not changes:
        return []
    for change in changes:
        _validate_consent_change(change)
    with transaction.atomic():
        events = ConsentEvent.objects.bulk_create(
            ConsentEvent(
                client_id=c.client_id,
                channel=c.channel,
                purpose=c.purpose,
                action=c.action,
                source=c.source,
                occurred_at=c.occurred_at,
                wording_version=c.wording_version,
                evidence=c.evidence,
                actor_id=c.actor_id,
                actor_label=c.actor_label,
            )
            for c in changes
        )
        latest: dict[tuple[int, str, str], ConsentEvent] = {}
        for event in events:
            key = (event.client_id, event.channel, event.purpose)
            current = latest.get(key)
            if current is None or (event.occurred_at, event.pk) > (current.occurred_at, current.pk):
                latest[key] = event
        _consent_state_upsert(latest.values())
        withdrawn = [e for e in latest.values() if e.action == ConsentAction.WITHDRAWN]
        if withdrawn:
            for handler in CONSENT_WITHDRAWAL_HANDLERS:
                handler(withdrawn)
    return events


def consent_record(
    *,
    client: Client | int,
    channel: str,
    purpose: str,
    action: str,
    source: str,
    wording_version: str,
    occurred_at: datetime | None = None,
    actor: Any = None,
    actor_label: str = "",
    evidence: str = "",
) -> ConsentEvent:
    """Record one consent grant or withdrawal (admin, call center, IVR, unsubscribe link)."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    change = ConsentChange(
        client_id=client if isinstance(client, int) else client.pk,
        channel=channel,
        purpose=purpose,
        action=action,
        source=source,
        wording_version=wording_version,
        occurred_at=occurred_at or timezone.now(),
        evidence=evidence,
        actor_label=actor_label or (user.get_username() if user else ""),
        actor_id=user.pk if user else None,
    )
    return consent_record_many(changes=[change])[0]


def _consent_state_upsert(events: Iterable[ConsentEvent]) -> None:
    rows = [
        (
            e.client_id,
            e.channel,
            e.purpose,
            e.action == ConsentAction.GRANTED,
            e.occurred_at,
            e.source,
            e.wording_version,
            e.pk,
        )
        for e in events
    ]
    table = Consent._meta.db_table
    columns = (
        "client_id, channel, purpose, is_granted, changed_at, source, wording_version, "
        "last_event_id"
    )
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES {placeholders} "
        "ON CONFLICT (client_id, channel, purpose) DO UPDATE SET "
        "is_granted = excluded.is_granted, changed_at = excluded.changed_at, "
        "source = excluded.source, wording_version = excluded.wording_version, "
        "last_event_id = excluded.last_event_id "
        f"WHERE ({table}.changed_at, {table}.last_event_id) "
        "< (excluded.changed_at, excluded.last_event_id)"
    )
    params: list[Any] = []
    for row in rows:
        params.extend(row)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# Catalog ---------------------------------------------------------------------------------------


def category_save(*, category: Category) -> Category:
    """Save a category and keep the materialized paths of it and its subtree right."""
    with transaction.atomic():
        old_path = ""
        if category.pk is not None:
            old_path = Category.objects.filter(pk=category.pk).values_list("path", flat=True).get()
        if category.parent_id is not None:
            parent = Category.objects.select_for_update().get(pk=category.parent_id)
            if category.pk is not None and f"/{category.pk}/" in parent.path:
                raise ValidationError(
                    {"parent": _("A category cannot be placed inside its own subtree.")}
                )
            prefix = parent.path
        else:
            prefix = "/"
        category.save()
        new_path = f"{prefix}{category.pk}/"
        if new_path != category.path:
            category.path = new_path
            Category.objects.filter(pk=category.pk).update(path=new_path)
        if old_path and old_path != new_path:
            Category.objects.filter(path__startswith=old_path).exclude(pk=category.pk).update(
                path=Concat(Value(new_path), Substr("path", len(old_path) + 1))
            )
    return category


# Purchases -------------------------------------------------------------------------------------


def purchase_finalize(*, purchase: Purchase) -> Purchase:
    """After a purchase or its items changed: copy client and time onto the items, and make the
    total the sum of the items when it has any."""
    with transaction.atomic():
        PurchaseItem.objects.filter(purchase=purchase).update(
            client_id=purchase.client_id, purchased_at=purchase.purchased_at
        )
        items_total = _items_total(purchase)
        if items_total is not None and items_total != purchase.total:
            purchase.total = items_total
            Purchase.objects.filter(pk=purchase.pk).update(total=items_total)
    return purchase


def _items_total(purchase: Purchase) -> Any:
    line = ExpressionWrapper(
        F("unit_price") * F("quantity") - F("discount"),
        output_field=DecimalField(max_digits=14, decimal_places=2),
    )
    total = PurchaseItem.objects.filter(purchase=purchase).aggregate(total=Sum(line))["total"]
    return None if total is None else round(total, 2)
