"""The tables the demo writes, their columns in row order, and the order they are written in.

Rows are plain tuples whose values both writers accept as they are: ints, bools, ``None`` and
pre-formatted strings (dates ``YYYY-MM-DD``; timestamps ``YYYY-MM-DD HH:MM:SS`` in UTC, which is
Django's SQLite format and what PostgreSQL reads in a UTC session; decimals ``123.45``; JSON text).
"""

from __future__ import annotations

Value = bool | int | str | None
Row = tuple[Value, ...]
Batch = dict[str, list[Row]]

# Written in this order, so foreign keys always point at rows already written.
TABLES: dict[str, tuple[str, ...]] = {
    "crm_interest": ("id", "created_at", "updated_at", "name"),
    "crm_category": (
        "id",
        "created_at",
        "updated_at",
        "name",
        "slug",
        "path",
        "sensitive",
        "parent_id",
    ),
    "crm_brand": ("id", "created_at", "updated_at", "name", "is_private_label"),
    "crm_product": (
        "id",
        "created_at",
        "updated_at",
        "sku",
        "name",
        "price",
        "cost",
        "in_stock",
        "active",
        "brand_id",
        "category_id",
    ),
    "loyalty_tier": (
        "id",
        "created_at",
        "updated_at",
        "name",
        "rank",
        "qualifying_spend",
        "window_days",
        "earn_rate",
        "benefit",
    ),
    "crm_client": (
        "id",
        "created_at",
        "updated_at",
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
        "is_anonymized",
        "anonymized_at",
    ),
    "crm_client_interests": ("id", "client_id", "interest_id"),
    "crm_child": ("id", "client_id", "birth_year", "gender"),
    "crm_pet": ("id", "client_id", "kind", "name"),
    "crm_consentevent": (
        "id",
        "client_id",
        "channel",
        "purpose",
        "action",
        "source",
        "occurred_at",
        "actor_id",
        "actor_label",
        "wording_version",
        "evidence",
        "created_at",
    ),
    "crm_consent": (
        "id",
        "client_id",
        "channel",
        "purpose",
        "is_granted",
        "changed_at",
        "source",
        "wording_version",
        "last_event_id",
    ),
    "crm_purchase": (
        "id",
        "created_at",
        "updated_at",
        "external_id",
        "client_id",
        "purchased_at",
        "channel",
        "store",
        "total",
    ),
    "crm_purchaseitem": (
        "id",
        "purchase_id",
        "product_id",
        "quantity",
        "unit_price",
        "discount",
        "client_id",
        "purchased_at",
    ),
    "crm_event": ("id", "client_id", "type", "occurred_at", "product_id", "payload", "created_at"),
    "loyalty_loyaltyaccount": (
        "id",
        "created_at",
        "updated_at",
        "client_id",
        "tier_id",
        "balance",
        "rolling_spend",
        "tier_recomputed_at",
    ),
    "loyalty_pointsentry": (
        "id",
        "account_id",
        "kind",
        "points",
        "purchase_id",
        "expires_at",
        "reason",
        "created_at",
    ),
}

CATALOG_TABLES = ("crm_interest", "crm_category", "crm_brand", "crm_product", "loyalty_tier")
CLIENT_TABLES = tuple(t for t in TABLES if t not in CATALOG_TABLES)


def empty_batch(tables: tuple[str, ...]) -> Batch:
    return {table: [] for table in tables}
