"""Attribution: which message earned which purchase (last touch within the offer's window).

A purchase is credited to the latest message that reached its client before it, within that
message's window (``OfferAttributionRule.window_days``, 7 days by default) and scope (the offer's
products and categories and the products named in the message, or any purchase). Holdout clients'
control records take part the same way, so the control group earns "control conversions" under
the very same rule and uplift compares like with like.

``attribution_recompute`` replaces the attributions of a window of purchases with a handful of
set-based statements (a DELETE and one INSERT ... SELECT), the same on SQLite and PostgreSQL.
It is idempotent: running it twice gives the same rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Max, Model
from django.db.models.functions import Coalesce
from django.utils import timezone

from crm.db.raw import db_datetime
from crm.models import Category, Product, Purchase, PurchaseItem
from messaging.models import (
    ATTRIBUTION_WINDOW_DAYS,
    Attribution,
    AttributionScope,
    CampaignRun,
    Message,
    MessageStatus,
    OfferAttributionRule,
)
from offers.models import Offer

# Messages that "reached" a client: sent (and not reported undelivered since), delivered, an
# answered call, and the holdout's never-sent control record.
TOUCH_STATUSES = [
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.ANSWERED,
    MessageStatus.CONTROL,
]

# The nightly run looks this far back, so purchases pushed a few weeks late are still credited.
NIGHTLY_LOOKBACK_DAYS = 35

# Any constant serializes concurrent recomputes (nightly and on demand) on PostgreSQL.
_LOCK_KEY = 0x4C696368  # "Lich"


@dataclass(frozen=True)
class RecomputeResult:
    since: dt.datetime
    until: dt.datetime
    deleted: int
    created: int


def run_window(
    run: CampaignRun, *, now: dt.datetime | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """Purchases a run's messages can earn: from its start to its last touch plus the window."""
    now = now or timezone.now()
    last = run.messages.aggregate(t=Max(Coalesce("sent_at", "scheduled_for")))["t"]
    days = ATTRIBUTION_WINDOW_DAYS
    offer_id = run.campaign.offer_id
    if offer_id is not None:
        rule = OfferAttributionRule.objects.filter(offer_id=offer_id).first()
        days = rule.window_days if rule else days
    until = (last or run.started_at) + dt.timedelta(days=days, seconds=1)
    return run.started_at, min(until, now)


def attribution_recompute(
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    run: CampaignRun | int | None = None,
    now: dt.datetime | None = None,
) -> RecomputeResult:
    """Re-attribute every purchase made in [since, until) (or in a run's window).

    All messages compete for those purchases, not only the run's: last touch is global, and a
    run's recompute must not steal a purchase that a later message of another campaign earned.
    """
    now = now or timezone.now()
    if run is not None:
        if not isinstance(run, CampaignRun):
            run = CampaignRun.objects.select_related("campaign").get(pk=run)
        since, until = run_window(run, now=now)
    if until is None:
        until = now
    if since is None:
        since = until - dt.timedelta(days=NIGHTLY_LOOKBACK_DAYS)
    if since >= until:
        return RecomputeResult(since, until, 0, 0)

    params = {
        "since": db_datetime(since),
        "until": db_datetime(until),
        "now": db_datetime(now),
        "any": AttributionScope.ANY.value,
        "offer": AttributionScope.OFFER.value,
        "control": MessageStatus.CONTROL.value,
        "no": False,
    }
    status_params = {f"s{i}": str(s) for i, s in enumerate(TOUCH_STATUSES)}
    params.update(status_params)
    sql = _insert_sql(", ".join(f"%({k})s" for k in status_params))
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        cursor.execute(
            f"""
            DELETE FROM {_t(Attribution)}
            WHERE (purchased_at >= %(since)s AND purchased_at < %(until)s)
               OR purchase_id IN (
                    SELECT id FROM {_t(Purchase)}
                    WHERE purchased_at >= %(since)s AND purchased_at < %(until)s)
            """,
            params,
        )
        deleted = cursor.rowcount
        cursor.execute(sql, params)
        created = cursor.rowcount
    return RecomputeResult(since, until, max(deleted, 0), max(created, 0))


def _t(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _insert_sql(statuses: str) -> str:
    """One INSERT ... SELECT: candidate (purchase, message) pairs, the latest per purchase, and
    the credited lines' revenue, margin and discount."""
    if connection.vendor == "postgresql":
        in_window = f"p.purchased_at < {_TOUCHED} + {_DAYS} * INTERVAL '1 day'"
        message_products = (
            "SELECT (j.value ->> 'id')::bigint FROM jsonb_array_elements({products}) j "
            "WHERE jsonb_typeof({products}) = 'array'"
        )
    else:
        in_window = f"julianday(p.purchased_at) < julianday({_TOUCHED}) + {_DAYS}"
        message_products = "SELECT json_extract(j.value, '$.id') FROM json_each({products}) j"

    fixed = Offer.fixed_products.through._meta.db_table

    def qualifies(item: str, category: str, offer: str, category_path: str, products: str) -> str:
        # The item is one of the offer's products, in its category's subtree, or named in the
        # message itself (strategies that choose products per client).
        return (
            f"({item}.product_id IN (SELECT fp.product_id FROM {fixed} fp "
            f"WHERE fp.offer_id = {offer})"
            f" OR ({category_path} IS NOT NULL AND {category}.path LIKE {category_path} || '%%')"
            f" OR {item}.product_id IN ({message_products.format(products=products)}))"
        )

    pair_item_ok = qualifies("i", "c", "m.offer_id", "oc.path", "m.products")
    winner_item_ok = qualifies("i", "c", "w.offer_id", "w.category_path", "w.products")
    line_ok = f"(w.scope = %(any)s OR {winner_item_ok})"
    line = "(i.unit_price * i.quantity - i.discount)"
    return f"""
    INSERT INTO {_t(Attribution)} (
        message_id, purchase_id, client_id, run_id, firing_id, offer_id, variant_id,
        is_control, purchased_at, revenue, margin, discount, attributed_at
    )
    WITH pairs AS (
        SELECT
            p.id AS purchase_id, p.client_id, p.purchased_at, p.total,
            m.id AS message_id, m.run_id, m.firing_id, m.offer_id, m.variant_id, m.products,
            oc.path AS category_path,
            (m.status = %(control)s) AS is_control,
            CASE WHEN m.offer_id IS NULL THEN %(any)s ELSE COALESCE(r.scope, %(offer)s) END
                AS scope,
            ROW_NUMBER() OVER (
                PARTITION BY p.id ORDER BY {_TOUCHED} DESC, m.id DESC
            ) AS rn
        FROM {_t(Purchase)} p
        JOIN {_t(Message)} m
            ON m.client_id = p.client_id AND m.scheduled_for <= p.purchased_at
        LEFT JOIN {_t(OfferAttributionRule)} r ON r.offer_id = m.offer_id
        LEFT JOIN {_t(Offer)} o ON o.id = m.offer_id
        LEFT JOIN {_t(Category)} oc ON oc.id = o.fixed_category_id
        WHERE p.purchased_at >= %(since)s AND p.purchased_at < %(until)s
          AND m.status IN ({statuses})
          AND m.is_transactional = %(no)s
          AND {_TOUCHED} <= p.purchased_at
          AND {in_window}
          AND (
            m.offer_id IS NULL OR r.scope = %(any)s
            OR EXISTS (
                SELECT 1 FROM {_t(PurchaseItem)} i
                JOIN {_t(Product)} pr ON pr.id = i.product_id
                JOIN {_t(Category)} c ON c.id = pr.category_id
                WHERE i.purchase_id = p.id AND {pair_item_ok}
            )
          )
    ),
    winners AS (SELECT * FROM pairs WHERE rn = 1)
    SELECT
        w.message_id, w.purchase_id, w.client_id, w.run_id, w.firing_id, w.offer_id,
        w.variant_id, w.is_control, w.purchased_at,
        CASE WHEN w.scope = %(any)s THEN w.total
             ELSE ROUND(COALESCE(SUM(CASE WHEN {line_ok} THEN {line} END), 0), 2) END,
        ROUND(COALESCE(SUM(
            CASE WHEN {line_ok} AND pr.cost IS NOT NULL THEN {line} - pr.cost * i.quantity END
        ), 0), 2),
        ROUND(COALESCE(SUM(CASE WHEN {line_ok} THEN i.discount END), 0), 2),
        %(now)s
    FROM winners w
    LEFT JOIN {_t(PurchaseItem)} i ON i.purchase_id = w.purchase_id
    LEFT JOIN {_t(Product)} pr ON pr.id = i.product_id
    LEFT JOIN {_t(Category)} c ON c.id = pr.category_id
    GROUP BY w.message_id, w.purchase_id, w.client_id, w.run_id, w.firing_id, w.offer_id,
             w.variant_id, w.is_control, w.purchased_at, w.scope, w.total
    """


# When a message reached the client: sent (calls: dialled) or, for control records, planned.
_TOUCHED = "COALESCE(m.sent_at, m.scheduled_for)"
_DAYS = f"COALESCE(r.window_days, {ATTRIBUTION_WINDOW_DAYS})"
