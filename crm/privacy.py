"""Personal data (152-FZ): what Lichno stores about a client, its export, anonymization, retention.

Registry of personal-data sections
----------------------------------
Each app that stores something about a person describes it as a :class:`Section` and registers
it. An app does so in its own ``<app>/privacy.py``, which this module imports on first use (like
``schedules.py``), so domain code keeps depending downward only::

    # messaging/privacy.py
    from django.utils.translation import gettext_lazy as _

    from crm.privacy import Rows, Section, register
    from messaging.models import Message

    def export_messages(client_ids: Sequence[int]) -> Rows:
        # One dict per stored row, each with "client_id"; values JSON-able or str()-able.
        return Message.objects.filter(client_id__in=client_ids).values(
            "client_id", "channel", "status", "text", "created_at"
        )

    def anonymize_messages(client_ids: Sequence[int]) -> None:
        # Set-based: a handful of statements for the whole batch, never one per client.
        Message.objects.filter(client_id__in=client_ids).update(text="", address="")

    register(
        Section(
            name="messages",  # key in the export; unique
            label=_("messages"),
            export=export_messages,
            anonymize=anonymize_messages,
        )
    )

The contract:

- ``export(client_ids) -> Rows`` (mappings, e.g. a ``.values()`` queryset): every row stored
  about those clients, each with a ``client_id`` key. Called for up to
  :data:`EXPORT_MAX_CLIENTS` ids at once; it must run a fixed number of queries whatever the
  number of ids. ``single=True`` says there is at most one row per client (a profile, an
  account): the export then holds that object, not a list.
- ``anonymize(client_ids) -> None`` (optional): remove the personal data of those clients. It runs
  inside the anonymization transaction, for a batch of at most :data:`BATCH_SIZE` clients that are
  not anonymized yet, *before* the client row itself is scrubbed (a section may still read the
  client's phone or e-mail to find rows stored by address). It must be set-based, must keep the
  rows that reports count (blank the personal columns instead of deleting facts), must leave
  append-only tables alone, and must not commit.
- Consents are withdrawn *before* any anonymizer runs (through ``consent_record_many``, so its
  own effects on queued messages have happened); code that picks clients to contact should still
  skip ``Client.is_anonymized`` (as segments and the offer engine do).
- Sections are exported in registration order (crm first, then apps in ``INSTALLED_APPS`` order)
  and anonymized in reverse order (higher layers first, the client row last).

What anonymization does (``client_anonymize_many``): withdraws every granted consent through
``crm.services.consent_record_many`` (source "anonymization", so the history stays append-only and
a withdrawal takes effect at once, also for queued messages), runs every section's anonymizer,
blanks the personal columns of the client row, detaches its external ID and sets
``is_anonymized``/``anonymized_at``, and writes one audit entry per client. Purchases, items, the
points ledger, events (without payload) and the coarse attributes reports group by (gender, city,
time zone, source) are kept. It cannot be undone. The consent history and the audit log are
append-only (database triggers) and keep their rows: they are the legally required record of
what the client agreed to and of who processed the data; they point at the now anonymous client
row and carry no names or contacts written by Lichno itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Exists, Model, OuterRef, QuerySet
from django.utils import timezone
from django.utils.module_loading import module_has_submodule
from django.utils.translation import gettext_lazy as _
from phonenumber_field.phonenumber import PhoneNumber

from crm.db.raw import chunks
from crm.models import (
    AuditAction,
    AuditLog,
    Child,
    Client,
    Consent,
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    Event,
    Pet,
    Purchase,
    PurchaseItem,
)
from crm.services import ConsentChange, audit_write_many, consent_record_many

# Clients per anonymization transaction: a few statements each, every IN list well within limits.
BATCH_SIZE = 1000
# Clients one export may cover (the admin action on a selection).
EXPORT_MAX_CLIENTS = 1000
EXPORT_FORMAT = "lichno-personal-data/1"

Rows = Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class Section:
    """One kind of personal data stored about a client; see the module docstring."""

    name: str
    label: Any
    export: Callable[[Sequence[int]], Rows]
    anonymize: Callable[[Sequence[int]], None] | None = None
    single: bool = False
    # The tables this section exports: every model that refers to a client, directly or through
    # one of its rows, must be exported by a section (a test walks the relations).
    models: tuple[type[Model], ...] = ()


_registry: dict[str, Section] = {}
_discovered = False


def register(section: Section) -> Section:
    """Add a section; names are unique (a second registration of a name is a bug)."""
    if section.name in _registry and _registry[section.name] is not section:
        raise ImproperlyConfigured(f"Personal-data section {section.name!r} is registered twice")
    _registry[section.name] = section
    return section


def unregister(name: str) -> None:
    """Remove a section (tests that register a temporary one)."""
    _registry.pop(name, None)


def sections() -> list[Section]:
    """Every registered section: crm's, then each installed app's ``privacy`` module's."""
    global _discovered
    if not _discovered:
        for app_config in apps.get_app_configs():
            if app_config.name != __name__.rpartition(".")[0] and module_has_submodule(
                app_config.module, "privacy"
            ):
                import_module(f"{app_config.name}.privacy")
        _discovered = True
    return list(_registry.values())


# Export ----------------------------------------------------------------------------------------


class _Encoder(DjangoJSONEncoder):
    """Dates, decimals and UUIDs as Django writes them; phones, time zones and the like as text."""

    def default(self, o: Any) -> Any:
        if isinstance(o, PhoneNumber):
            return o.as_e164
        try:
            return super().default(o)
        except TypeError:
            return str(o)


def _plain(value: Any) -> Any:
    """A value as it will appear in the file (JSON types only)."""
    return json.loads(json.dumps(value, cls=_Encoder))


def personal_data_collect(*, client_ids: Sequence[int]) -> dict[str, Any]:
    """Everything stored about the clients, section by section (reads only; see ``..._export``)."""
    ids = sorted(set(client_ids))
    if len(ids) > EXPORT_MAX_CLIENTS:
        raise ValueError(f"At most {EXPORT_MAX_CLIENTS} clients per export")
    found = list(Client.objects.filter(pk__in=ids).values_list("pk", flat=True).order_by("pk"))
    per_client: dict[int, dict[str, Any]] = {pk: {} for pk in found}
    registered = sections()
    for section in registered:
        grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in section.export(found) if found else ():
            row = _plain(dict(row))
            grouped[row.pop("client_id")].append(row)
        for pk in found:
            rows = grouped.get(pk, [])
            per_client[pk][section.name] = (rows[0] if rows else None) if section.single else rows
    return {
        "format": EXPORT_FORMAT,
        "exported_at": timezone.now().isoformat(),
        "sections": [{"name": s.name, "label": str(s.label)} for s in registered],
        "clients": [{"client_id": pk, **per_client[pk]} for pk in found],
    }


def personal_data_export(
    *, client_ids: Sequence[int], actor: Any = None, file_format: str = "json"
) -> dict[str, Any]:
    """Collect a data-subject export and write who exported whose data to the audit log."""
    data = personal_data_collect(client_ids=client_ids)
    changes = {"scope": "personal_data", "format": file_format}
    audit_write_many(
        action=AuditAction.DATA_EXPORTED,
        entries=[(c["client_id"], changes) for c in data["clients"]],
        actor=actor,
    )
    return data


def personal_data_to_json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, cls=_Encoder, ensure_ascii=False, indent=2).encode()


CSV_COLUMNS = ("client_id", "section", "row", "field", "value")


def personal_data_to_csv(data: dict[str, Any]) -> str:
    """The same export as one long CSV table: one line per stored value.

    A long table holds sections of any shape in one file that opens in a spreadsheet; nested
    values (attributes, payloads, lists) are written as JSON.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    names = [s["name"] for s in data["sections"]]
    for client in data["clients"]:
        for name in names:
            value = client.get(name)
            rows = [value] if isinstance(value, dict) else (value or [])
            for number, row in enumerate(rows, start=1):
                for field_name, field_value in row.items():
                    if isinstance(field_value, dict | list):
                        field_value = json.dumps(field_value, ensure_ascii=False)
                    writer.writerow(
                        [client["client_id"], name, number, field_name, _csv_text(field_value)]
                    )
    return out.getvalue()


_NUMBER_OR_PHONE = re.compile(r"[+-][\d .,()-]*")


def _csv_text(value: Any) -> str:
    text = "" if value is None else str(value)
    # A leading =, +, -, @ makes spreadsheets run the cell as a formula (CSV injection);
    # phones and negative numbers are left as they are.
    risky = text[:1] in ("=", "@", "\t", "\r") or (
        text[:1] in ("+", "-") and not _NUMBER_OR_PHONE.fullmatch(text)
    )
    return "'" + text if risky else text


# Anonymization ---------------------------------------------------------------------------------

# Everything on the client row that identifies the person or describes them in free text;
# what stays (gender, city, time zone, source, timestamps) is what reports group by.
_CLIENT_BLANKED: dict[str, Any] = {
    "external_id": None,
    "last_name": "",
    "first_name": "",
    "middle_name": "",
    "birth_date": None,
    "phone": "",
    "email": "",
    "region": "",
    "preferred_channel": "",
    "preferred_contact_time": "",
    "family_status": "",
    "occupation": "",
    "education": "",
    "attributes": {},
}


def client_anonymize_many(
    *,
    client_ids: Iterable[int],
    actor: Any = None,
    actor_label: str = "",
    reason: str = "request",
) -> list[int]:
    """Anonymize clients, irreversibly; returns the ids anonymized now (others already were).

    Runs one transaction per :data:`BATCH_SIZE` clients, each a fixed handful of statements:
    lock the batch, withdraw consents, each section's anonymizer, scrub the client rows, audit.
    """
    user = actor if getattr(actor, "is_authenticated", False) else None
    label = actor_label or (user.get_username() if user else "")
    done: list[int] = []
    for chunk in chunks(sorted(set(client_ids)), BATCH_SIZE):
        with transaction.atomic():
            # The row lock makes a second, concurrent anonymization of a client wait and then
            # skip it (on SQLite the write transaction itself serializes).
            batch = list(
                Client.objects.select_for_update()
                .filter(pk__in=chunk, is_anonymized=False)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            if not batch:
                continue
            now = timezone.now()
            _withdraw_consents(batch, now=now, actor_id=user.pk if user else None, label=label)
            for section in reversed(sections()):
                if section.anonymize is not None:
                    section.anonymize(batch)
            Client.objects.filter(pk__in=batch).update(
                **_CLIENT_BLANKED, is_anonymized=True, anonymized_at=now, updated_at=now
            )
            audit_write_many(
                action=AuditAction.CLIENT_ANONYMIZED,
                entries=[(pk, {"reason": reason}) for pk in batch],
                actor=user,
                actor_label=label,
            )
        done.extend(batch)
    return done


def _withdraw_consents(
    client_ids: Sequence[int], *, now: dt.datetime, actor_id: int | None, label: str
) -> None:
    granted = Consent.objects.filter(client_id__in=client_ids, is_granted=True).values_list(
        "client_id", "channel", "purpose", "wording_version", "changed_at"
    )
    consent_record_many(
        changes=[
            ConsentChange(
                client_id=client_id,
                channel=channel,
                purpose=purpose,
                action=ConsentAction.WITHDRAWN,
                source=ConsentSource.ANONYMIZATION,
                # The withdrawal refers to the wording the client had agreed to.
                wording_version=wording_version,
                # Never before the grant it withdraws (a grant may be stamped minutes ahead),
                # or the current state would not move.
                occurred_at=max(now, changed_at),
                actor_id=actor_id,
                actor_label=label or "lichno",
            )
            for client_id, channel, purpose, wording_version, changed_at in granted
        ]
    )


# Retention -------------------------------------------------------------------------------------


def retention_cutoff(*, now: dt.datetime | None = None, years: int | None = None) -> dt.datetime:
    """``now`` minus ``years`` calendar years (29 February becomes 28 February)."""
    now = now or timezone.now()
    years = settings.PRIVACY_RETENTION_YEARS if years is None else years
    try:
        return now.replace(year=now.year - years)
    except ValueError:
        return now.replace(year=now.year - years, day=28)


def retention_candidates(*, cutoff: dt.datetime) -> QuerySet[Client]:
    """Clients to anonymize: not anonymized, created before ``cutoff``, with no purchase, no
    behavioural event and no consent event (grant or withdrawal: consent was held until then)
    since, and no consent granted now. Each test is an index-served NOT EXISTS."""
    return Client.objects.filter(is_anonymized=False, created_at__lt=cutoff).filter(
        ~Exists(Purchase.objects.filter(client_id=OuterRef("pk"), purchased_at__gte=cutoff)),
        ~Exists(Event.objects.filter(client_id=OuterRef("pk"), occurred_at__gte=cutoff)),
        ~Exists(ConsentEvent.objects.filter(client_id=OuterRef("pk"), occurred_at__gte=cutoff)),
        ~Exists(Consent.objects.filter(client_id=OuterRef("pk"), is_granted=True)),
    )


@dataclass(frozen=True)
class RetentionResult:
    anonymized: int
    more: bool  # candidates remain after ``max_batches``: run again


def retention_anonymize(
    *,
    now: dt.datetime | None = None,
    years: int | None = None,
    batch_size: int = BATCH_SIZE,
    max_batches: int = 50,
) -> RetentionResult:
    """Anonymize clients inactive and without consent for ``years`` (default
    ``PRIVACY_RETENTION_YEARS``; 0 turns retention off), at most ``max_batches`` batches."""
    years = settings.PRIVACY_RETENTION_YEARS if years is None else years
    if years <= 0:
        return RetentionResult(0, False)
    cutoff = retention_cutoff(now=now, years=years)
    total, last_id = 0, 0
    for _batch in range(max_batches):
        ids = list(
            retention_candidates(cutoff=cutoff)
            .filter(pk__gt=last_id)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return RetentionResult(total, False)
        last_id = ids[-1]
        total += len(
            client_anonymize_many(
                client_ids=ids, actor_label="retention", reason=f"retention: {years} years"
            )
        )
    more = retention_candidates(cutoff=cutoff).filter(pk__gt=last_id).exists()
    return RetentionResult(total, more)


# crm's own sections ----------------------------------------------------------------------------

_PROFILE_FIELDS = (
    "external_id",
    "last_name",
    "first_name",
    "middle_name",
    "gender",
    "birth_date",
    "phone",
    "email",
    "city",
    "region",
    "time_zone",
    "preferred_channel",
    "preferred_contact_time",
    "family_status",
    "occupation",
    "education",
    "attributes",
    "source",
    "created_at",
    "updated_at",
    "is_anonymized",
    "anonymized_at",
)


def _export_profile(client_ids: Sequence[int]) -> Rows:
    interests: dict[int, list[str]] = defaultdict(list)
    for client_id, name in (
        Client.interests.through.objects.filter(client_id__in=client_ids)
        .order_by("interest__name")
        .values_list("client_id", "interest__name")
    ):
        interests[client_id].append(name)
    for row in Client.objects.filter(pk__in=client_ids).values("id", *_PROFILE_FIELDS):
        client_id = row.pop("id")
        yield {"client_id": client_id, **row, "interests": interests.get(client_id, [])}


def _export_children(client_ids: Sequence[int]) -> Rows:
    return (
        Child.objects.filter(client_id__in=client_ids)
        .order_by("id")
        .values("client_id", "birth_year", "gender")
    )


def _export_pets(client_ids: Sequence[int]) -> Rows:
    return (
        Pet.objects.filter(client_id__in=client_ids)
        .order_by("id")
        .values("client_id", "kind", "name")
    )


def _anonymize_family(client_ids: Sequence[int]) -> None:
    # Children's birth years are a minor's personal data: the rows go. A pet's kind is not
    # personal and feeds reports ("dog owners"); its name is.
    Child.objects.filter(client_id__in=client_ids).delete()
    Pet.objects.filter(client_id__in=client_ids).update(name="")
    Client.interests.through.objects.filter(client_id__in=client_ids).delete()


def _export_consents(client_ids: Sequence[int]) -> Rows:
    return (
        Consent.objects.filter(client_id__in=client_ids)
        .order_by("channel", "purpose")
        .values(
            "client_id",
            "channel",
            "purpose",
            "is_granted",
            "changed_at",
            "source",
            "wording_version",
        )
    )


def _export_consent_history(client_ids: Sequence[int]) -> Rows:
    return (
        ConsentEvent.objects.filter(client_id__in=client_ids)
        .order_by("occurred_at", "id")
        .values(
            "client_id",
            "channel",
            "purpose",
            "action",
            "source",
            "occurred_at",
            "wording_version",
            "evidence",
            "actor_label",
        )
    )


def _export_purchases(client_ids: Sequence[int]) -> Rows:
    return (
        Purchase.objects.filter(client_id__in=client_ids)
        .order_by("purchased_at", "id")
        .values("client_id", "id", "external_id", "purchased_at", "channel", "store", "total")
    )


def _export_purchase_items(client_ids: Sequence[int]) -> Rows:
    return (
        PurchaseItem.objects.filter(client_id__in=client_ids)
        .order_by("purchased_at", "purchase_id", "id")
        .values(
            "client_id",
            "purchase_id",
            "purchased_at",
            "product__sku",
            "product__name",
            "quantity",
            "unit_price",
            "discount",
        )
    )


def _export_events(client_ids: Sequence[int]) -> Rows:
    return (
        Event.objects.filter(client_id__in=client_ids)
        .order_by("occurred_at", "id")
        .values("client_id", "type", "occurred_at", "product__sku", "payload")
    )


def _anonymize_events(client_ids: Sequence[int]) -> None:
    # Type, time and product stay for behaviour reports; a payload may hold search words,
    # addresses or a caller's number.
    Event.objects.filter(client_id__in=client_ids).exclude(payload={}).update(payload={})


def _export_audit(client_ids: Sequence[int]) -> Rows:
    # What was done with the data and when; staff identities are not the client's data.
    return (
        AuditLog.objects.filter(client_id__in=client_ids)
        .order_by("occurred_at", "id")
        .values("client_id", "occurred_at", "action")
    )


register(Section("profile", _("profile"), _export_profile, single=True, models=(Client,)))
register(Section("children", _("children"), _export_children, _anonymize_family, models=(Child,)))
register(Section("pets", _("pets"), _export_pets, models=(Pet,)))
register(Section("consents", _("current consents"), _export_consents, models=(Consent,)))
# Consent history is append-only by law (proof of what the client agreed to and withdrew);
# anonymization appends withdrawals and rewrites nothing.
register(
    Section(
        "consent_history",
        _("consent history"),
        _export_consent_history,
        models=(ConsentEvent,),
    )
)
register(Section("purchases", _("purchases"), _export_purchases, models=(Purchase,)))
register(
    Section("purchase_items", _("purchase items"), _export_purchase_items, models=(PurchaseItem,))
)
register(
    Section("events", _("behaviour events"), _export_events, _anonymize_events, models=(Event,))
)
register(Section("audit_log", _("processing log"), _export_audit, models=(AuditLog,)))
