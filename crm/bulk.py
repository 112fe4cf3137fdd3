"""Bulk upserts of the client domain: the one write path shared by the REST API and file import.

Each ``*_upsert_many`` / ``*_record_many`` service takes up to ``MAX_BATCH_SIZE`` plain dicts
(decoded JSON, or file rows converted to the same shape) and is set-based: it validates every
row in Python, reads the existing rows with one SELECT per key set, and writes with a handful of
multi-row ``INSERT ... ON CONFLICT`` statements, whatever the batch size.

Modes. By default every valid row is stored and every invalid one reported with its index; with
``atomic=True`` a batch with any error stores nothing. Either way the writes of one call happen
in one transaction. Re-sending the same batch changes nothing: rows equal to what is stored are
counted as ``unchanged`` and not written.

Matching rules:
- clients by ``external_id`` (required); fields absent from a row keep their stored value;
- products by ``sku``; a category is given by slug and created (at the root) when unknown, a
  brand by name, created when unknown;
- purchases by ``external_id``; the client by ``client_external_id`` or ``client_phone``; items by
  product ``sku``; a purchase whose header or items differ from the stored one is updated and
  its items replaced; new purchases get their loyalty points by a task started on commit;
- events are facts identified by (client, type, occurred_at, product): a repeated one is
  ``unchanged``;
- consent events are appended to the history through ``crm.services.consent_record_many``; one
  equal in (client, channel, purpose, action, occurred_at, source, wording version) to a stored
  event is ``unchanged``.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email, validate_slug
from django.db import connection, transaction
from django.db.models import CharField, Model, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext as _
from psycopg.types.json import Jsonb

from crm import services
from crm.db.raw import chunks, copy_rows, db_datetime
from crm.geo import time_zone_for_city
from crm.models import (
    AuditAction,
    Brand,
    Category,
    Channel,
    Client,
    ClientSource,
    ConsentAction,
    ConsentEvent,
    ConsentPurpose,
    ConsentSource,
    ContactTime,
    Education,
    Event,
    EventType,
    FamilyStatus,
    Gender,
    Product,
    Purchase,
    PurchaseItem,
    SalesChannel,
)
from crm.phones import is_valid_national_number, normalize_phone

MAX_BATCH_SIZE = 10_000
MAX_ITEMS_PER_PURCHASE = 1_000

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"


@dataclass(frozen=True)
class RowError:
    index: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


@dataclass
class BulkResult:
    """What a batch did. ``statuses[i]`` is CREATED/UPDATED/UNCHANGED, or None for a row in error
    (or for every row of a rejected atomic batch)."""

    size: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    statuses: list[str | None] = field(default_factory=list)
    rejected: bool = False

    def __post_init__(self) -> None:
        if not self.statuses:
            self.statuses = [None] * self.size

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "errors": [e.as_dict() for e in self.errors],
        }

    def mark(self, index: int, status: str) -> None:
        self.statuses[index] = status
        if status == CREATED:
            self.created += 1
        elif status == UPDATED:
            self.updated += 1
        else:
            self.unchanged += 1


class BatchTooLarge(Exception):
    def __init__(self, size: int, limit: int = MAX_BATCH_SIZE) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"A batch holds at most {limit} objects; got {size}.")


# Validation ------------------------------------------------------------------------------------


class Invalid(Exception):
    """A value is not acceptable; ``field`` may name a nested path ("items[2].sku")."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(message)


_MISSING = object()
_YEAR_MIN, _YEAR_MAX = 1900, 2100


def _check_text(value: str) -> str:
    if "\x00" in value:
        raise Invalid(_("Null characters are not allowed."))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(_("The text is not valid Unicode.")) from None
    return value


def text(max_length: int, *, required: bool = False) -> Callable[[Any], str]:
    def clean(value: Any) -> str:
        if value is None:
            value = ""
        elif isinstance(value, bool):
            raise Invalid(_("Expected a string."))
        elif isinstance(value, int):
            value = str(value)
        elif not isinstance(value, str):
            raise Invalid(_("Expected a string."))
        value = _check_text(value.strip())
        if required and not value:
            raise Invalid(_("This field may not be blank."))
        if len(value) > max_length:
            raise Invalid(
                _("Ensure this field has no more than %(n)d characters.") % {"n": max_length}
            )
        return value

    return clean


def choice(values: Sequence[str]) -> Callable[[Any], str]:
    allowed = frozenset(values)

    def clean(value: Any) -> str:
        value = "" if value is None else value
        if not isinstance(value, str) or value.strip() not in allowed:
            shown = ", ".join(repr(v) for v in values)
            raise Invalid(
                _("%(value)r is not a valid choice; expected one of: %(allowed)s.")
                % {"value": value, "allowed": shown}
            )
        return value.strip()

    return clean


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "y", "да"):
            return True
        if lowered in ("false", "0", "no", "n", "нет"):
            return False
    raise Invalid(_("Must be a valid boolean."))


def decimal(
    max_digits: int, places: int, *, minimum: Decimal | None = None, positive: bool = False
) -> Callable[[Any], Decimal]:
    bound = Decimal(10) ** (max_digits - places)
    quantum = Decimal(1).scaleb(-places)

    def clean(value: Any) -> Decimal:
        if isinstance(value, str):
            value = value.strip().replace(",", ".")
        elif isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise Invalid(_("A valid number is required."))
        elif isinstance(value, float):
            value = str(value)
        try:
            number = Decimal(value)
            if not number.is_finite():
                raise InvalidOperation
            exact = number.quantize(quantum)
        except InvalidOperation:
            raise Invalid(_("A valid number is required.")) from None
        if exact != number:
            raise Invalid(
                _("Ensure that there are no more than %(n)d decimal places.") % {"n": places}
            )
        if abs(exact) >= bound:
            raise Invalid(_("The number is too large."))
        if positive and exact <= 0:
            raise Invalid(_("Ensure this value is greater than 0."))
        if minimum is not None and exact < minimum:
            raise Invalid(
                _("Ensure this value is greater than or equal to %(n)s.") % {"n": minimum}
            )
        return exact

    return clean


def date(value: Any) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        if not isinstance(value, str):
            raise Invalid(_("Date has wrong format. Use YYYY-MM-DD."))
        try:
            value = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise Invalid(_("Date has wrong format. Use YYYY-MM-DD.")) from None
    if not _YEAR_MIN <= value.year <= _YEAR_MAX:
        raise Invalid(
            _("The year must be between %(a)d and %(b)d.") % {"a": _YEAR_MIN, "b": _YEAR_MAX}
        )
    return value


def moment(value: Any) -> dt.datetime:
    """An ISO 8601 date-time; without an offset it is read in the company time zone."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise Invalid(
                _("Datetime has wrong format. Use ISO 8601, e.g. 2025-01-31T18:45:00+03:00.")
            ) from None
    else:
        raise Invalid(_("Datetime has wrong format. Use ISO 8601, e.g. 2025-01-31T18:45:00+03:00."))
    if not _YEAR_MIN <= parsed.year <= _YEAR_MAX:
        raise Invalid(
            _("The year must be between %(a)d and %(b)d.") % {"a": _YEAR_MIN, "b": _YEAR_MAX}
        )
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, timezone.get_default_timezone())
    return parsed


def json_object(value: Any) -> dict[str, Any]:
    """A JSON object to store: text checked, Decimal numbers (from the API's parser) as
    int/float, nesting bounded."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(_("Expected a JSON object."))
    return _plain_json(value, depth=0)


_JSON_INT_BOUND = Decimal(10) ** 18


def _plain_json(value: Any, depth: int) -> Any:
    if depth > 20:
        raise Invalid(_("The object is nested too deeply."))
    if isinstance(value, str):
        return _check_text(value)
    if isinstance(value, dict):
        return {_check_text(str(k)): _plain_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(item, depth + 1) for item in value]
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise Invalid(_("Numbers must be finite."))
        if abs(value) < _JSON_INT_BOUND and value == value.to_integral_value():
            return int(value)
        number = float(value)
        if number in (float("inf"), float("-inf")):
            raise Invalid(_("Numbers must be finite."))
        return number
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise Invalid(_("Numbers must be finite."))
    return value


_E164 = re.compile(r"\+([1-9]\d{7,14})")


@lru_cache(maxsize=200_000)
def phone_e164(raw: str) -> str | None:
    """``crm.phones.normalize_phone`` with a fast path for numbers already in E.164.

    Parsing is most of the cost of a client row; a number sent as ``+<country><number>`` is
    checked for validity without it. Anything unusual takes the full parser, so results are
    identical to ``normalize_phone`` (tested).
    """
    match = _E164.fullmatch(raw)
    if match:
        digits = match.group(1)
        for size in (1, 2, 3):
            code = int(digits[:size])
            regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
            if regions:
                national = digits[size:]
                metadata = phonenumbers.PhoneMetadata.metadata_for_region(regions[0])
                prefix = metadata.national_prefix if metadata else None
                if national[:1] != "0" and not (prefix and national.startswith(prefix)):
                    valid = is_valid_national_number(code, national)
                    if valid is None:
                        valid = phonenumbers.is_valid_number(
                            phonenumbers.PhoneNumber(
                                country_code=code, national_number=int(national)
                            )
                        )
                    if valid:
                        return raw
                break
    return normalize_phone(raw)


def phone(value: Any) -> str:
    if value in (None, ""):
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise Invalid(_("Expected a string."))
    normalized = phone_e164(value.strip()) if len(value) <= 40 else None
    if normalized is None:
        raise Invalid(_("Not a valid phone number: %(value)s.") % {"value": value[:40]})
    return normalized


# A strict subset of what Django's EmailValidator accepts (dot-atom local part of common
# characters, LDH labels, alphabetic TLD). Most addresses match it in ~1 µs; anything else gets
# the full validator (~80 µs), so the verdict is always Django's (tested).
_PLAIN_EMAIL = re.compile(
    r"[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)


def email(value: Any) -> str:
    cleaned = text(254)(value).lower()
    if cleaned and not _PLAIN_EMAIL.fullmatch(cleaned):
        try:
            validate_email(cleaned)
        except ValidationError:
            raise Invalid(_("Enter a valid email address.")) from None
    return cleaned


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def time_zone(value: Any) -> str:
    cleaned = text(63, required=True)(value)
    if cleaned not in _time_zones():
        raise Invalid(
            _("Unknown time zone %(value)r; use an IANA name like Europe/Moscow.")
            % {"value": cleaned}
        )
    return cleaned


def slug(value: Any) -> str:
    cleaned = text(150, required=True)(value)
    try:
        validate_slug(cleaned)
    except ValidationError:
        raise Invalid(_("Enter a valid slug: letters, numbers, underscores or hyphens.")) from None
    return cleaned


Spec = dict[str, Callable[[Any], Any]]


def _clean_row(row: Any, spec: Spec, required: Iterable[str] = ()) -> dict[str, Any]:
    """Clean the fields of ``spec`` present in ``row``; raise Invalid for the first bad one."""
    if not isinstance(row, dict):
        raise Invalid(_("Expected an object."), field="")
    for name in required:
        if row.get(name) in (None, ""):
            raise Invalid(_("This field is required."), field=name)
    cleaned: dict[str, Any] = {}
    for name, clean in spec.items():
        value = row.get(name, _MISSING)
        if value is _MISSING:
            continue
        try:
            cleaned[name] = clean(value)
        except Invalid as error:
            raise Invalid(error.message, field=error.field or name) from None
    return cleaned


def _check_size(rows: Sequence[Any]) -> None:
    if len(rows) > MAX_BATCH_SIZE:
        raise BatchTooLarge(len(rows))


# SQL -------------------------------------------------------------------------------------------


def _max_params() -> int:
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        try:
            limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except AttributeError:  # pragma: no cover - Python < 3.11
            limit = 999
        return min(limit, 32_000)
    return 100_000


def _insert(
    model: type[Model],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    conflict: Sequence[str] = (),
    update: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert many rows, optionally ``ON CONFLICT DO UPDATE/NOTHING`` and ``RETURNING``.

    PostgreSQL: COPY into a temporary table, then one ``INSERT ... SELECT`` (in key order, so
    that concurrent batches lock rows in the same order). SQLite: multi-row ``INSERT ... VALUES``
    statements of as many rows as it takes parameters for.
    """
    if not rows:
        return []
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    names = ", ".join(qn(c) for c in columns)
    tail = ""
    if conflict:
        tail += f" ON CONFLICT ({', '.join(qn(c) for c in conflict)}) DO "
        if update:
            tail += "UPDATE SET " + ", ".join(f"{qn(c)} = excluded.{qn(c)}" for c in update)
        else:
            tail += "NOTHING"
    if returning:
        tail += " RETURNING " + ", ".join(qn(c) for c in returning)
    out: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            staging = qn(f"bulk_{model._meta.db_table}")
            order = f" ORDER BY {', '.join(qn(c) for c in conflict)}" if conflict else ""
            cursor.execute(
                f"CREATE TEMP TABLE {staging} ON COMMIT DROP AS "
                f"SELECT {names} FROM {table} WITH NO DATA"
            )
            with cursor.cursor.copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging}{order}{tail}"
            )
            if returning:
                out.extend(cursor.fetchall())
            cursor.execute(f"DROP TABLE {staging}")
            return out
        one = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for chunk in chunks(rows, max(1, _max_params() // len(columns))):
            params = [value for row in chunk for value in row]
            cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES " + ", ".join([one] * len(chunk)) + tail,
                params,
            )
            if returning:
                out.extend(cursor.fetchall())
    return out


def _copy_or_insert(
    model: type[Model], columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Plain insert of many rows: COPY on PostgreSQL (several times faster), INSERT elsewhere."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        _insert(model, columns, rows)
        return
    copy_rows(model._meta.db_table, columns, rows)


def _day(value: dt.date | None) -> Any:
    if _on_postgresql():
        return value
    return connection.ops.adapt_datefield_value(value)


def _json(value: Any) -> Any:
    if _on_postgresql():
        return Jsonb(value)
    return connection.ops.adapt_json_value(value, None)


@lru_cache(maxsize=1)
def _on_postgresql() -> bool:
    """One database per process: the vendor is looked up once."""
    return connection.vendor == "postgresql"


def _db_phone(value: Any) -> str:
    if not value:
        return ""
    return value.as_e164 if hasattr(value, "as_e164") else str(value)


def _in_chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    """Key lists small enough for one ``IN`` on SQLite; one list on PostgreSQL (see ``_in``)."""
    items = list(values)
    if connection.vendor == "postgresql":
        if items:
            yield items
        return
    for chunk in chunks(items, max(1, _max_params() - 10)):
        yield list(chunk)


def _in(field_name: str, keys: Sequence[Any], sql_type: str = "text") -> Q:
    """``field IN keys``; on PostgreSQL as one array parameter (``unnest``), because thousands
    of placeholders cost more to bind than the query does to run."""
    if connection.vendor == "postgresql":
        return Q(**{f"{field_name}__in": RawSQL(f"SELECT unnest(%s::{sql_type}[])", (list(keys),))})
    return Q(**{f"{field_name}__in": list(keys)})


# Client resolution (purchases, events, consents) -----------------------------------------------


class _ClientIndex:
    """Client ids for the ``client_external_id`` / ``client_phone`` of a batch: two SELECTs."""

    def __init__(self, external_ids: Iterable[str], phones: Iterable[str]) -> None:
        self.by_external: dict[str, int] = {}
        self.by_phone: dict[str, list[int]] = defaultdict(list)
        for chunk in _in_chunks(set(external_ids)):
            self.by_external.update(
                (str(external_id), pk)
                for external_id, pk in Client.objects.filter(_in("external_id", chunk)).values_list(
                    "external_id", "id"
                )
            )
        for chunk in _in_chunks(set(phones)):
            for client_id, number in (
                Client.objects.filter(_in("phone", chunk))
                .annotate(phone_text=Cast("phone", CharField()))
                .values_list("id", "phone_text")
            ):
                self.by_phone[_db_phone(number)].append(client_id)

    def resolve(self, row: dict[str, Any]) -> int:
        external_id = row.get("client_external_id")
        if external_id:
            client_id = self.by_external.get(external_id)
            if client_id is None:
                raise Invalid(_("No client with this external ID."), field="client_external_id")
            return client_id
        ids = self.by_phone.get(row["client_phone"], [])
        if not ids:
            raise Invalid(_("No client with this phone."), field="client_phone")
        if len(ids) > 1:
            raise Invalid(
                _("Several clients have this phone; send client_external_id."),
                field="client_phone",
            )
        return ids[0]


_CLIENT_REF: Spec = {"client_external_id": text(64), "client_phone": phone}


def _client_ref(row: Any) -> dict[str, Any]:
    ref = _clean_row(row, _CLIENT_REF)
    if not ref.get("client_external_id") and not ref.get("client_phone"):
        raise Invalid(_("Give client_external_id or client_phone."), field="client_external_id")
    return ref


def _finish(result: BulkResult, atomic: bool) -> bool:
    """Sort errors; in atomic mode with errors, reject the batch. True when writing may go on."""
    result.errors.sort(key=lambda e: e.index)
    if atomic and result.errors:
        result.rejected = True
        return False
    return True


def _clean_rows(
    rows: Sequence[Any],
    clean: Callable[[Any], dict[str, Any]],
    result: BulkResult,
    *,
    key: str | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    """Clean every row; record each bad row (and, with ``key``, each later duplicate of a key)
    as an error. Returns the good rows with their indexes, in order."""
    good: list[tuple[int, dict[str, Any]]] = []
    first: dict[Any, int] = {}
    for index, row in enumerate(rows):
        try:
            values = clean(row)
        except Invalid as error:
            result.errors.append(RowError(index, error.field or "", error.message))
            continue
        if key is not None:
            if values[key] in first:
                result.errors.append(
                    RowError(
                        index,
                        key,
                        _("Duplicate of the object at index %(i)d in this batch.")
                        % {"i": first[values[key]]},
                    )
                )
                continue
            first[values[key]] = index
        good.append((index, values))
    return good


# Clients ---------------------------------------------------------------------------------------

CLIENT_SPEC: Spec = {
    "external_id": text(64, required=True),
    "last_name": text(100),
    "first_name": text(100),
    "middle_name": text(100),
    "gender": choice(Gender.values),
    "birth_date": date,
    "phone": phone,
    "email": email,
    "city": text(100),
    "region": text(150),
    "time_zone": time_zone,
    "preferred_channel": choice(Channel.values + [""]),
    "preferred_contact_time": choice(ContactTime.values),
    "family_status": choice(FamilyStatus.values),
    "occupation": text(150),
    "education": choice(Education.values),
    "attributes": json_object,
    "source": choice(ClientSource.values),
}
CLIENT_FIELDS = [name for name in CLIENT_SPEC if name != "external_id"]
# Columns of client files (import and export): the spec's flat fields.
CLIENT_FILE_COLUMNS = [name for name in CLIENT_SPEC if name not in ("attributes", "source")]
_CLIENT_SELECT = [
    {"phone": "phone_text", "time_zone": "tz_text"}.get(name, name)
    for name in ["id", *CLIENT_FIELDS]
]
_CLIENT_DEFAULTS: dict[str, Any] = {
    **{name: "" for name in CLIENT_FIELDS},
    "birth_date": None,
    "attributes": {},
    "time_zone": settings.TIME_ZONE,
}


def _client_db_value(name: str, value: Any) -> Any:
    if name == "phone":
        return _db_phone(value)
    if name == "time_zone":
        return str(value)
    if name in ("birth_date",):
        return value
    return value if value is not None else ""


def client_upsert_many(
    *,
    rows: Sequence[Any],
    atomic: bool = False,
    actor: Any = None,
    source: str = ClientSource.API,
) -> BulkResult:
    """Create or update clients matched by ``external_id``; see the module doc for the rules."""
    _check_size(rows)
    result = BulkResult(size=len(rows))
    valid = _clean_rows(
        rows,
        lambda row: _clean_row(row, CLIENT_SPEC, required=("external_id",)),
        result,
        key="external_id",
    )
    if not _finish(result, atomic):
        return result

    columns = ["id", *CLIENT_FIELDS]
    with transaction.atomic():
        existing: dict[str, dict[str, Any]] = {}
        for chunk in _in_chunks([row["external_id"] for _i, row in valid]):
            for values in (
                Client.objects.filter(_in("external_id", chunk))
                # As text: the fields' own converters would parse every phone and time zone.
                .annotate(
                    phone_text=Cast("phone", CharField()), tz_text=Cast("time_zone", CharField())
                )
                .values_list("external_id", *_CLIENT_SELECT)
            ):
                existing[values[0]] = {
                    name: _client_db_value(name, v)
                    for name, v in zip(columns, values[1:], strict=True)
                }
        now = timezone.now()
        writes: list[tuple[Any, ...]] = []
        audit: list[tuple[str, str, list[str]]] = []
        for index, row in valid:
            stored = existing.get(row["external_id"])
            if (
                "city" in row
                and "time_zone" not in row
                and (stored is None or stored["city"] != row["city"])
            ):
                derived = time_zone_for_city(row["city"])
                if derived:
                    row["time_zone"] = derived
            if stored is None:
                merged = {**_CLIENT_DEFAULTS, "source": source, **row}
                changed = sorted(name for name in row if name != "external_id")
                status = CREATED
            else:
                changed = sorted(
                    name for name in CLIENT_FIELDS if name in row and row[name] != stored[name]
                )
                if not changed:
                    result.mark(index, UNCHANGED)
                    continue
                merged = {**stored, **row}
                status = UPDATED
            result.mark(index, status)
            audit.append((row["external_id"], status, changed))
            writes.append(
                (
                    row["external_id"],
                    *(
                        _day(merged[name])
                        if name == "birth_date"
                        else _json(merged[name])
                        if name == "attributes"
                        else merged[name]
                        for name in CLIENT_FIELDS
                    ),
                    db_datetime(now),
                    db_datetime(now),
                    False,
                )
            )
        if writes:
            returned = _insert(
                Client,
                ["external_id", *CLIENT_FIELDS, "created_at", "updated_at", "is_anonymized"],
                writes,
                conflict=["external_id"],
                update=[*CLIENT_FIELDS, "updated_at"],
                returning=["external_id", "id"],
            )
            ids = dict(returned)
            # Every change to a stored client is audited with the fields it touched; creations
            # are one entry per batch (the rows carry created_at and source themselves).
            if result.created:
                services.audit_write_many(
                    action=AuditAction.CLIENT_CREATED,
                    entries=[(None, {"via": "bulk", "source": source, "count": result.created})],
                    actor=actor,
                )
            services.audit_write_many(
                action=AuditAction.CLIENT_UPDATED,
                entries=[
                    (ids[k], {"fields": f, "via": "bulk"}) for k, s, f in audit if s == UPDATED
                ],
                actor=actor,
            )
    return result


# Products --------------------------------------------------------------------------------------

PRODUCT_SPEC: Spec = {
    "sku": text(64, required=True),
    "name": text(255, required=True),
    "category": slug,
    "category_name": text(150),
    "brand": text(150),
    "price": decimal(12, 2, minimum=Decimal(0)),
    "cost": lambda v: None if v in (None, "") else decimal(12, 2, minimum=Decimal(0))(v),
    "in_stock": boolean,
    "active": boolean,
}
PRODUCT_FIELDS = ["name", "category_id", "brand_id", "price", "cost", "in_stock", "active"]


def _categories_for(slugs: dict[str, str]) -> dict[str, int]:
    """Category ids by slug; unknown slugs become root categories (through ``category_save``)."""
    found = dict(Category.objects.filter(slug__in=list(slugs)).values_list("slug", "id"))
    for missing in sorted(set(slugs) - set(found)):
        category = services.category_save(
            category=Category(name=slugs[missing] or missing, slug=missing)
        )
        found[missing] = category.pk
    return found


def _brands_for(names: set[str]) -> dict[str, int]:
    found = dict(Brand.objects.filter(name__in=list(names)).values_list("name", "id"))
    missing = names - set(found)
    if missing:
        now = db_datetime(timezone.now())
        _insert(
            Brand,
            ["name", "is_private_label", "created_at", "updated_at"],
            [(name, False, now, now) for name in sorted(missing)],
            conflict=["name"],
        )
        found.update(Brand.objects.filter(name__in=list(missing)).values_list("name", "id"))
    return found


def product_upsert_many(
    *, rows: Sequence[Any], atomic: bool = False, actor: Any = None
) -> BulkResult:
    """Create or update products matched by ``sku``; see the module doc for the rules."""
    _check_size(rows)
    result = BulkResult(size=len(rows))
    valid = _clean_rows(
        rows, lambda row: _clean_row(row, PRODUCT_SPEC, required=("sku",)), result, key="sku"
    )

    columns = ["id", *PRODUCT_FIELDS]
    existing: dict[str, dict[str, Any]] = {}
    for chunk in _in_chunks([row["sku"] for _i, row in valid]):
        for values in Product.objects.filter(_in("sku", chunk)).values_list("sku", *columns):
            existing[values[0]] = dict(zip(columns, values[1:], strict=True))
    writable = []
    for index, row in valid:
        if row["sku"] not in existing:
            for name in ("name", "category", "price"):
                if name not in row:
                    result.errors.append(
                        RowError(index, name, _("This field is required for a new product."))
                    )
                    break
            else:
                writable.append((index, row))
        else:
            writable.append((index, row))
    if not _finish(result, atomic):
        return result

    with transaction.atomic():
        slugs: dict[str, str] = {}
        for _index, row in writable:
            if "category" in row:
                slugs.setdefault(row["category"], row.get("category_name", ""))
        categories = _categories_for(slugs) if slugs else {}
        brand_names = {row["brand"] for _i, row in writable if row.get("brand")}
        brands = _brands_for(brand_names) if brand_names else {}
        now = db_datetime(timezone.now())
        writes = []
        for index, row in writable:
            values = {k: v for k, v in row.items() if k in PRODUCT_FIELDS}
            if "category" in row:
                values["category_id"] = categories[row["category"]]
            if "brand" in row:
                values["brand_id"] = brands.get(row["brand"]) if row["brand"] else None
            stored = existing.get(row["sku"])
            if stored is None:
                merged = {
                    "brand_id": None,
                    "cost": None,
                    "in_stock": True,
                    "active": True,
                    **values,
                }
                result.mark(index, CREATED)
            else:
                if all(stored[k] == v for k, v in values.items()):
                    result.mark(index, UNCHANGED)
                    continue
                merged = {**stored, **values}
                result.mark(index, UPDATED)
            writes.append((row["sku"], *(merged[name] for name in PRODUCT_FIELDS), now, now))
        _insert(
            Product,
            ["sku", *PRODUCT_FIELDS, "created_at", "updated_at"],
            writes,
            conflict=["sku"],
            update=[*PRODUCT_FIELDS, "updated_at"],
        )
    return result


# Purchases -------------------------------------------------------------------------------------

PURCHASE_SPEC: Spec = {
    "external_id": text(64, required=True),
    "purchased_at": moment,
    "channel": choice(SalesChannel.values),
    "store": text(100),
    "total": decimal(12, 2, minimum=Decimal(0)),
}
ITEM_SPEC: Spec = {
    "sku": text(64, required=True),
    "quantity": decimal(10, 3, positive=True),
    "unit_price": decimal(12, 2, minimum=Decimal(0)),
    "discount": decimal(12, 2, minimum=Decimal(0)),
}
_CENT = Decimal("0.01")
_TOTAL_BOUND = Decimal(10) ** 10


def _clean_purchase(row: Any) -> dict[str, Any]:
    cleaned = _clean_row(row, PURCHASE_SPEC, required=("external_id", "purchased_at"))
    cleaned.update(_client_ref(row))
    items = row.get("items", [])
    if items is None:
        items = []
    if not isinstance(items, list):
        raise Invalid(_("Expected a list of items."), field="items")
    if len(items) > MAX_ITEMS_PER_PURCHASE:
        raise Invalid(
            _("A purchase holds at most %(n)d items.") % {"n": MAX_ITEMS_PER_PURCHASE},
            field="items",
        )
    cleaned_items = []
    for position, item in enumerate(items):
        try:
            cleaned_items.append(_clean_row(item, ITEM_SPEC, required=("sku",)))
        except Invalid as error:
            raise Invalid(error.message, field=f"items[{position}].{error.field}") from None
    cleaned["items"] = cleaned_items
    if not cleaned_items and "total" not in cleaned:
        raise Invalid(_("Give the items or the total."), field="total")
    return cleaned


def purchase_upsert_many(
    *, rows: Sequence[Any], atomic: bool = False, actor: Any = None
) -> BulkResult:
    """Create, update or confirm purchases with their items; see the module doc for the rules.

    New purchases get their loyalty points from a task queued when the transaction commits.
    """
    _check_size(rows)
    result = BulkResult(size=len(rows))
    valid = _clean_rows(rows, _clean_purchase, result, key="external_id")

    clients = _ClientIndex(
        (row["client_external_id"] for _, row in valid if row.get("client_external_id")),
        (
            row["client_phone"]
            for _, row in valid
            if row.get("client_phone") and not row.get("client_external_id")
        ),
    )
    skus = {item["sku"] for _, row in valid for item in row["items"]}
    products: dict[str, tuple[int, Decimal]] = {}
    for chunk in _in_chunks(skus):
        products.update(
            (sku, (pk, price))
            for sku, pk, price in Product.objects.filter(_in("sku", chunk)).values_list(
                "sku", "id", "price"
            )
        )
    resolved: list[tuple[int, dict[str, Any]]] = []
    for index, row in valid:
        try:
            row["client_id"] = clients.resolve(row)
            total = Decimal(0)
            lines = []
            for position, item in enumerate(row["items"]):
                product = products.get(item["sku"])
                if product is None:
                    raise Invalid(_("No product with this SKU."), field=f"items[{position}].sku")
                quantity = item.get("quantity", Decimal("1.000"))
                unit_price = item.get("unit_price", product[1])
                discount = item.get("discount", Decimal("0.00"))
                lines.append((product[0], quantity, unit_price, discount))
                total += unit_price * quantity - discount
            if lines:
                total = total.quantize(_CENT)
                if total < 0:
                    raise Invalid(_("The items add up to a negative total."), field="items")
                if total >= _TOTAL_BOUND:
                    raise Invalid(_("The total is too large."), field="items")
                row["total"] = total
            row["lines"] = lines
            resolved.append((index, row))
        except Invalid as error:
            result.errors.append(RowError(index, error.field or "", error.message))
    if not _finish(result, atomic):
        return result

    with transaction.atomic():
        existing: dict[str, tuple[Any, ...]] = {}
        for chunk in _in_chunks([row["external_id"] for _i, row in resolved]):
            for values in Purchase.objects.filter(_in("external_id", chunk)).values_list(
                "external_id",
                "id",
                "client_id",
                "purchased_at",
                "channel",
                "store",
                "total",
                "created_at",
            ):
                existing[values[0] or ""] = values[1:]  # never empty: filtered by it
        stored_lines: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        for chunk in _in_chunks([values[0] for values in existing.values()]):
            for purchase_id, *line in PurchaseItem.objects.filter(
                _in("purchase_id", chunk, "bigint")
            ).values_list("purchase_id", "product_id", "quantity", "unit_price", "discount"):
                stored_lines[purchase_id].append(tuple(line))

        now = timezone.now()
        new_rows: list[tuple[int, dict[str, Any]]] = []
        changed_rows: list[tuple[int, dict[str, Any], tuple[Any, ...]]] = []
        for index, row in resolved:
            header = (
                row["client_id"],
                row["purchased_at"],
                row.get("channel", SalesChannel.STORE),
                row.get("store", ""),
                row["total"],
            )
            row["header"] = header
            stored = existing.get(row["external_id"])
            if stored is None:
                new_rows.append((index, row))
            elif header == tuple(stored[1:6]) and sorted(row["lines"]) == sorted(
                stored_lines.get(stored[0], [])
            ):
                result.mark(index, UNCHANGED)
            else:
                changed_rows.append((index, row, stored))

        ids: dict[str, int] = {}
        if new_rows:
            returned = _insert(
                Purchase,
                [
                    "external_id",
                    "client_id",
                    "purchased_at",
                    "channel",
                    "store",
                    "total",
                    "created_at",
                    "updated_at",
                ],
                [
                    (
                        row["external_id"],
                        row["client_id"],
                        db_datetime(row["purchased_at"]),
                        *row["header"][2:],
                        db_datetime(now),
                        db_datetime(now),
                    )
                    for _i, row in new_rows
                ],
                conflict=["external_id"],
                returning=["external_id", "id"],
            )
            ids.update(returned)
        for index, row in new_rows:
            # A purchase not returned was inserted concurrently by another request: it is the
            # same purchase, so it counts as unchanged and its items are not written twice.
            result.mark(index, CREATED if row["external_id"] in ids else UNCHANGED)
        if changed_rows:
            _insert(
                Purchase,
                [
                    "id",
                    "external_id",
                    "client_id",
                    "purchased_at",
                    "channel",
                    "store",
                    "total",
                    "created_at",
                    "updated_at",
                ],
                [
                    (
                        stored[0],
                        row["external_id"],
                        row["client_id"],
                        db_datetime(row["purchased_at"]),
                        *row["header"][2:],
                        db_datetime(stored[6]),
                        db_datetime(now),
                    )
                    for _i, row, stored in changed_rows
                ],
                conflict=["id"],
                update=["client_id", "purchased_at", "channel", "store", "total", "updated_at"],
            )
            changed_ids = [stored[0] for _, _, stored in changed_rows]
            for chunk in _in_chunks(changed_ids):
                PurchaseItem.objects.filter(_in("purchase_id", chunk, "bigint")).delete()
            for index, row, stored in changed_rows:
                ids[row["external_id"]] = stored[0]
                result.mark(index, UPDATED)
        item_rows = [
            (
                ids[row["external_id"]],
                product_id,
                quantity,
                unit_price,
                discount,
                row["client_id"],
                db_datetime(row["purchased_at"]),
            )
            for index, row in resolved
            if result.statuses[index] in (CREATED, UPDATED)
            for product_id, quantity, unit_price, discount in row["lines"]
        ]
        _copy_or_insert(
            PurchaseItem,
            [
                "purchase_id",
                "product_id",
                "quantity",
                "unit_price",
                "discount",
                "client_id",
                "purchased_at",
            ],
            item_rows,
        )
        created_ids = [
            ids[row["external_id"]] for index, row in new_rows if result.statuses[index] == CREATED
        ]
        if created_ids:
            from loyalty.tasks import accrue_points_enqueue

            accrue_points_enqueue(purchase_ids=created_ids)
    return result


# Events ----------------------------------------------------------------------------------------

EVENT_SPEC: Spec = {
    "type": choice(EventType.values),
    "occurred_at": moment,
    "sku": text(64),
    "payload": json_object,
}


def event_record_many(
    *, rows: Sequence[Any], atomic: bool = False, actor: Any = None
) -> BulkResult:
    """Append behavioural events; an event already stored (same client, type, time and product)
    is ``unchanged``."""
    _check_size(rows)
    result = BulkResult(size=len(rows))
    cleaned = _clean_rows(
        rows,
        lambda row: {
            **_clean_row(row, EVENT_SPEC, required=("type", "occurred_at")),
            **_client_ref(row),
        },
        result,
    )
    clients = _ClientIndex(
        (r["client_external_id"] for _i, r in cleaned if r.get("client_external_id")),
        (
            r["client_phone"]
            for _i, r in cleaned
            if r.get("client_phone") and not r.get("client_external_id")
        ),
    )
    skus = {r["sku"] for _i, r in cleaned if r.get("sku")}
    products = dict(Product.objects.filter(sku__in=list(skus)).values_list("sku", "id"))
    resolved = []
    for index, row in cleaned:
        try:
            row["client_id"] = clients.resolve(row)
            row["product_id"] = None
            if row.get("sku"):
                if row["sku"] not in products:
                    raise Invalid(_("No product with this SKU."), field="sku")
                row["product_id"] = products[row["sku"]]
            resolved.append((index, row))
        except Invalid as error:
            result.errors.append(RowError(index, error.field or "", error.message))
    if not _finish(result, atomic):
        return result

    with transaction.atomic():
        seen: set[tuple[Any, ...]] = set()
        if resolved:
            times = [row["occurred_at"] for _i, row in resolved]
            for chunk in _in_chunks({row["client_id"] for _, row in resolved}):
                seen.update(
                    Event.objects.filter(
                        _in("client_id", chunk, "bigint"),
                        occurred_at__gte=min(times),
                        occurred_at__lte=max(times),
                    ).values_list("client_id", "type", "occurred_at", "product_id")
                )
        now = db_datetime(timezone.now())
        writes = []
        for index, row in resolved:
            key = (row["client_id"], row["type"], row["occurred_at"], row["product_id"])
            if key in seen:
                result.mark(index, UNCHANGED)
                continue
            seen.add(key)
            result.mark(index, CREATED)
            writes.append(
                (
                    row["client_id"],
                    row["type"],
                    db_datetime(row["occurred_at"]),
                    row["product_id"],
                    _json(row.get("payload", {})),
                    now,
                )
            )
        _insert(
            Event,
            ["client_id", "type", "occurred_at", "product_id", "payload", "created_at"],
            writes,
        )
    return result


# Consents --------------------------------------------------------------------------------------

CONSENT_SPEC: Spec = {
    "channel": choice(Channel.values),
    "purpose": choice(ConsentPurpose.values),
    "action": choice(ConsentAction.values),
    "source": choice(ConsentSource.values),
    "wording_version": text(50, required=True),
    "occurred_at": moment,
    "evidence": text(10_000),
}


def consent_import_many(
    *,
    rows: Sequence[Any],
    atomic: bool = False,
    actor: Any = None,
    source: str = ConsentSource.API,
) -> BulkResult:
    """Append consent grants and withdrawals to the history (``consent_record_many`` derives the
    current state); an event already in the history is ``unchanged``."""
    _check_size(rows)
    result = BulkResult(size=len(rows))
    cleaned = _clean_rows(
        rows,
        lambda row: {
            **_clean_row(
                row, CONSENT_SPEC, required=("channel", "action", "wording_version", "occurred_at")
            ),
            **_client_ref(row),
        },
        result,
    )
    clients = _ClientIndex(
        (r["client_external_id"] for _i, r in cleaned if r.get("client_external_id")),
        (
            r["client_phone"]
            for _i, r in cleaned
            if r.get("client_phone") and not r.get("client_external_id")
        ),
    )
    user = actor if getattr(actor, "is_authenticated", False) else None
    changes: list[tuple[int, services.ConsentChange]] = []
    for index, row in cleaned:
        try:
            change = services.ConsentChange(
                client_id=clients.resolve(row),
                channel=row["channel"],
                purpose=row.get("purpose", ConsentPurpose.MARKETING),
                action=row["action"],
                source=row.get("source", source),
                wording_version=row["wording_version"],
                occurred_at=row["occurred_at"],
                evidence=row.get("evidence", ""),
                actor_id=user.pk if user else None,
                actor_label=user.get_username() if user else "",
            )
            try:
                services._validate_consent_change(change)  # noqa: SLF001 - same app
            except services.ConsentError as error:
                name, messages = next(iter(error.message_dict.items()))
                raise Invalid(str(messages[0]), field=name) from None
            changes.append((index, change))
        except Invalid as error:
            result.errors.append(RowError(index, error.field or "", error.message))
    if not _finish(result, atomic):
        return result

    with transaction.atomic():
        seen: set[tuple[Any, ...]] = set()
        if changes:
            times = [c.occurred_at for _i, c in changes]
            for chunk in _in_chunks({c.client_id for _i, c in changes}):
                seen.update(
                    ConsentEvent.objects.filter(
                        _in("client_id", chunk, "bigint"),
                        occurred_at__gte=min(times),
                        occurred_at__lte=max(times),
                    ).values_list(
                        "client_id",
                        "channel",
                        "purpose",
                        "action",
                        "occurred_at",
                        "source",
                        "wording_version",
                    )
                )
        fresh = []
        for index, change in changes:
            key = (
                change.client_id,
                change.channel,
                change.purpose,
                change.action,
                change.occurred_at,
                change.source,
                change.wording_version,
            )
            if key in seen:
                result.mark(index, UNCHANGED)
                continue
            seen.add(key)
            result.mark(index, CREATED)
            fresh.append(change)
        services.consent_record_many(changes=fresh)
    return result


UPSERTS: dict[str, Callable[..., BulkResult]] = {
    "clients": client_upsert_many,
    "products": product_upsert_many,
    "purchases": purchase_upsert_many,
    "events": event_record_many,
    "consents": consent_import_many,
}
