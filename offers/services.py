"""Use cases that change offers: validation and save, promo codes, association mining.

The one place that assigns and redeems promo codes and writes mined associations.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.models import Category, Product, Purchase
from offers import pricing
from offers.models import (
    AssociationStatus,
    BenefitKind,
    CrossSellRule,
    Offer,
    OfferStatus,
    OfferVariant,
    ProductAssociation,
    ProductStrategy,
    PromoCode,
    PromoPool,
)
from offers.templating import (
    TemplateCheckError,
    compile_message_template,
    compile_reason_template,
    structure_warnings,
)

# Validation ------------------------------------------------------------------------------------


def offer_margin_violations(
    *,
    benefit_kind: str,
    benefit_value: Decimal,
    min_margin: Decimal,
    products: Iterable[Product],
    limit: int = 5,
) -> list[str]:
    """The products a discount would push below the minimum margin (their names, at most
    ``limit``)."""
    bad = []
    for product in products:
        ok = pricing.keeps_margin(
            price=product.price,
            cost=product.cost,
            kind=benefit_kind,
            value=benefit_value,
            min_margin=min_margin,
        )
        if not ok:
            bad.append(product.name)
            if len(bad) >= limit:
                break
    return bad


def offer_validate(
    *, offer: Offer, fixed_products: Iterable[Product] | None = None
) -> dict[str, list[str]]:
    """Errors of an offer by field: the window, the benefit, the strategy's products and the
    margin guard (a discount may not leave a fixed product, or any product of the fixed
    category, below the minimum margin over cost)."""
    errors: dict[str, list[str]] = {}

    def add(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    if offer.starts_at and offer.ends_at and offer.ends_at <= offer.starts_at:
        add("ends_at", _("The offer must end after it starts."))
    unknown = [c for c in (offer.channels or []) if c not in ("sms", "call", "email")]
    if unknown:
        add("channels", _("Unknown channels: %s.") % ", ".join(map(str, unknown)))
    if offer.status == OfferStatus.ACTIVE and not offer.channels:
        add("channels", _("An active offer needs at least one channel."))
    kind, value = offer.benefit_kind, offer.benefit_value or Decimal(0)
    if kind == BenefitKind.PERCENT and not (0 < value < 100):
        add("benefit_value", _("A percent discount is between 0 and 100."))
    if kind in (BenefitKind.AMOUNT, BenefitKind.POINTS) and value <= 0:
        add("benefit_value", _("Give the amount of the benefit."))
    products = list(fixed_products) if fixed_products is not None else []
    if offer.strategy == ProductStrategy.FIXED and not products and not offer.fixed_category_id:
        add("strategy", _("The fixed strategy needs products or a category."))
    if kind in (BenefitKind.PERCENT, BenefitKind.AMOUNT) and "benefit_value" not in errors:
        scope = list(products)
        if offer.fixed_category_id:
            category = Category.objects.get(pk=offer.fixed_category_id)
            scope += list(
                Product.objects.filter(
                    category__path__startswith=category.path, active=True, in_stock=True
                )
            )
        bad = offer_margin_violations(
            benefit_kind=kind,
            benefit_value=value,
            min_margin=pricing.min_margin_percent(offer),
            products=scope,
        )
        if bad:
            add(
                "benefit_value",
                _(
                    "The discount would push these products below the minimum margin of "
                    "%(margin)s%% over cost: %(names)s."
                )
                % {"margin": pricing.min_margin_percent(offer), "names": "; ".join(bad)},
            )
    if offer.reason_template:
        try:
            compile_reason_template(offer.reason_template)
        except TemplateCheckError as exc:
            errors.setdefault("reason_template", []).extend(exc.messages)
    return errors


VARIANT_TEMPLATES = (
    ("sms_text", False),
    ("voice_script", False),
    ("email_subject", False),
    ("email_body", True),
)


def variant_check(*, variant: OfferVariant) -> tuple[dict[str, list[str]], list[str]]:
    """Errors by field (refused templates) and structure warnings of a variant's texts."""
    errors: dict[str, list[str]] = {}
    warnings: list[str] = []
    for name, html in VARIANT_TEMPLATES:
        source = getattr(variant, name) or ""
        try:
            checked = compile_message_template(source, html=html)
        except TemplateCheckError as exc:
            errors[name] = exc.messages
            continue
        if name in ("sms_text", "voice_script"):
            label = _("SMS") if name == "sms_text" else _("voice script")
            warnings += [f"{label}: {w}" for w in structure_warnings(source, checked.variables)]
    return errors, warnings


def cross_sell_rule_check(*, rule: CrossSellRule) -> dict[str, list[str]]:
    if not rule.reason_text:
        return {}
    try:
        compile_reason_template(rule.reason_text)
    except TemplateCheckError as exc:
        return {"reason_text": exc.messages}
    return {}


def offer_save(
    *, offer: Offer, fixed_products: Iterable[Product] | None = None, actor: Any = None
) -> Offer:
    """Validate (``ValidationError`` by field) and save an offer."""
    products = list(fixed_products) if fixed_products is not None else None
    if products is None and offer.pk:
        products = list(offer.fixed_products.all())
    errors = offer_validate(offer=offer, fixed_products=products or [])
    if errors:
        raise ValidationError(errors)
    if offer.pk is None and getattr(actor, "is_authenticated", False):
        offer.created_by = actor
    with transaction.atomic():
        offer.save()
        if fixed_products is not None:
            offer.fixed_products.set(products or [])
    return offer


# Promo codes ----------------------------------------------------------------------------------

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


class PromoCodeError(ValidationError):
    pass


def promo_pool_generate(*, pool: PromoPool, count: int, batch_size: int = 5000) -> int:
    """Add ``count`` new random codes (prefix + ``code_length`` characters) to a pool."""
    if count <= 0:
        return 0
    created = 0
    attempts = 0
    while created < count and attempts < 20:
        attempts += 1
        want = min(batch_size, count - created)
        codes = {
            pool.prefix + "".join(secrets.choice(CODE_ALPHABET) for _ in range(pool.code_length))
            for _ in range(want)
        }
        before = PromoCode.objects.filter(pool=pool).count()
        PromoCode.objects.bulk_create(
            [PromoCode(pool=pool, code=code) for code in codes], ignore_conflicts=True
        )
        created += PromoCode.objects.filter(pool=pool).count() - before
    return created


@dataclass(frozen=True)
class UploadResult:
    created: int
    duplicates: int
    invalid: int


def promo_pool_upload(*, pool: PromoPool, codes: Iterable[str]) -> UploadResult:
    """Add uploaded codes (one per line of a file, say); existing and blank ones are skipped."""
    cleaned: list[str] = []
    invalid = 0
    for raw in codes:
        code = raw.strip()
        if not code:
            continue
        if len(code) > 64 or any(ch.isspace() for ch in code):
            invalid += 1
            continue
        cleaned.append(code)
    unique = list(dict.fromkeys(cleaned))
    before = PromoCode.objects.filter(pool=pool).count()
    for start in range(0, len(unique), 5000):
        PromoCode.objects.bulk_create(
            [PromoCode(pool=pool, code=c) for c in unique[start : start + 5000]],
            ignore_conflicts=True,
        )
    created = PromoCode.objects.filter(pool=pool).count() - before
    return UploadResult(created, len(cleaned) - created, invalid)


def promo_code_assign_many(
    *,
    pool: PromoPool,
    client_ids: Sequence[int],
    offer: Offer | None = None,
    at: dt.datetime | None = None,
) -> dict[int, str]:
    """Give each client one free code of the pool; returns client id -> code.

    Idempotent: a client who already holds an unredeemed code of the pool gets that code back;
    one who redeemed it gets none. Safe under concurrent callers: on PostgreSQL free codes are
    taken with ``FOR UPDATE SKIP LOCKED``, so parallel assigners never wait for or take the same
    code; the partial unique (pool, client) constraint refuses a second code for one client,
    and the losing caller re-reads and retries. SQLite serializes writers (IMMEDIATE
    transactions). An offer's ``quantity_limit`` holds here, where codes are handed out, for
    every caller (the engine trims its proposals to it too, but a campaign proposes its next
    batches before the current one's codes exist). Clients missing from the answer could not
    get a code: the pool ran out, or the offer's limit was reached.
    """
    at = at or timezone.now()
    remaining = list(dict.fromkeys(int(c) for c in client_ids))
    out: dict[int, str] = {}
    for attempt in range(ASSIGN_ROUNDS):
        if not remaining:
            break
        try:
            with transaction.atomic():
                got, settled = _assign(pool, remaining, offer, at)
        except IntegrityError:
            # another caller gave one of these clients a code first: read it and go on
            time.sleep(0.01 * (attempt + 1))
            continue
        out.update(got)
        remaining = [c for c in remaining if c not in settled]
        # Fewer free codes than clients: either the pool is empty, or concurrent callers hold
        # locks on free codes (SKIP LOCKED skipped them) and may still release some.
        if not remaining or not PromoCode.objects.filter(pool=pool, client__isnull=True).exists():
            break
        time.sleep(0.01 * (attempt + 1))
    return out


ASSIGN_ROUNDS = 20


def _offer_room(offer: Offer) -> int:
    """How many more codes the offer may hand out. Its row stays locked until the caller's
    transaction ends, so concurrent assigners of a limited offer take turns and never both
    take the last ones (FOR NO KEY UPDATE: rows that merely refer to the offer, messages and
    codes being written, are not held up)."""
    assert offer.quantity_limit is not None
    locked = Offer.objects.select_for_update(no_key=True).filter(pk=offer.pk)
    list(locked.values_list("pk", flat=True))
    issued = PromoCode.objects.filter(offer_id=offer.pk).count()
    return max(0, offer.quantity_limit - issued)


def _assign(
    pool: PromoPool, wanted: list[int], offer: Offer | None, at: dt.datetime
) -> tuple[dict[int, str], set[int]]:
    """Codes for ``wanted`` clients, and the clients settled: given a code, holding one
    already (redeemed or not), or left without one because the offer's limit is reached."""
    held = PromoCode.objects.filter(pool=pool, client_id__in=wanted).values_list(
        "client_id", "code", "redeemed_at"
    )
    out: dict[int, str] = {}
    done: set[int] = set()
    for client_id, code, redeemed_at in held:
        done.add(client_id)
        if redeemed_at is None:
            out[client_id] = code
    todo = [c for c in wanted if c not in done]
    if todo and offer is not None and offer.quantity_limit is not None:
        room = _offer_room(offer)
        done.update(todo[room:])  # settled: no code for them, the limit is reached
        todo = todo[:room]
    if not todo:
        return out, done
    free = PromoCode.objects.filter(pool=pool, client__isnull=True).order_by("id")
    if connection.features.has_select_for_update_skip_locked:
        free = free.select_for_update(skip_locked=True)
    picked = list(free.values_list("id", "code")[: len(todo)])
    if not picked:
        return out, done
    pairs = list(zip(todo, picked, strict=False))
    table = PromoCode._meta.db_table
    offer_id = offer.pk if offer else None
    with connection.cursor() as cursor:
        for start in range(0, len(pairs), 1000):
            chunk = pairs[start : start + 1000]
            if connection.vendor == "postgresql":
                values = ", ".join(["(%s, %s)"] * len(chunk))
                params: list[Any] = []
                for client_id, (code_id, _code) in chunk:
                    params += [code_id, client_id]
                cursor.execute(
                    f"UPDATE {table} AS c SET client_id = v.client_id, assigned_at = %s, "
                    f"offer_id = %s FROM (VALUES {values}) AS v(id, client_id) "
                    "WHERE c.id = v.id AND c.client_id IS NULL",
                    [at, offer_id, *params],
                )
            else:
                cursor.executemany(
                    f"UPDATE {table} SET client_id = %s, assigned_at = %s, offer_id = %s "
                    "WHERE id = %s AND client_id IS NULL",
                    [(cid, at, offer_id, code_id) for cid, (code_id, _c) in chunk],
                )
            if cursor.rowcount != len(chunk):
                raise IntegrityError("a promo code was taken concurrently")
    for client_id, (_code_id, code) in pairs:
        out[client_id] = code
        done.add(client_id)
    return out, done


def promo_code_redeem(
    *,
    code: str,
    client_id: int | None = None,
    purchase: Purchase | None = None,
    at: dt.datetime | None = None,
) -> PromoCode:
    """Record the single use of a code (by API or from a purchase). ``PromoCodeError`` when the
    code is unknown, not assigned, already used, or belongs to another client."""
    at = at or timezone.now()
    if purchase is not None:
        client_id = client_id or purchase.client_id
        if client_id != purchase.client_id:
            raise PromoCodeError({"client_id": _("The purchase belongs to another client.")})
    with transaction.atomic():
        promo = PromoCode.objects.select_for_update().filter(code=code.strip()).first()
        if promo is None:
            raise PromoCodeError({"code": _("No such promo code.")})
        if promo.client_id is None:
            raise PromoCodeError({"code": _("This promo code has not been given to anyone.")})
        if client_id is not None and promo.client_id != client_id:
            raise PromoCodeError({"code": _("This promo code belongs to another client.")})
        if promo.redeemed_at is not None:
            raise PromoCodeError({"code": _("This promo code has already been used.")})
        promo.redeemed_at = at
        promo.redeemed_purchase = purchase
        promo.save(update_fields=["redeemed_at", "redeemed_purchase"])
        for handler in PROMO_REDEMPTION_HANDLERS:
            handler([promo])
    return promo


# Called in the redeeming transaction with the codes just used: messaging cancels the messages
# still waiting to offer them (a redeemed code is never offered again; offers knows no outbox).
PROMO_REDEMPTION_HANDLERS: list[Callable[[Sequence[PromoCode]], None]] = []


# Mined associations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MiningResult:
    pairs: int
    created: int
    updated: int
    total_clients: int
    seconds: float


def associations_mine(
    *,
    window_days: int = 30,
    lookback_days: int = 365,
    min_pair_clients: int = 20,
    min_confidence: float = 0.05,
    min_lift: float = 1.2,
    at: dt.datetime | None = None,
) -> MiningResult:
    """Mine category associations from purchases: A -> B when clients who first bought (leaf)
    category A bought B within ``window_days`` after (the same basket included).

    One SQL statement counts clients per category and per ordered pair over the purchase items
    of the last ``lookback_days``; sensitive categories (and their subtrees) are left out. Pairs
    above the thresholds are upserted with their figures; a marketer's accept/reject decision is
    kept. Pairs that fall below the thresholds are dropped unless decided.
    """
    started = time.perf_counter()
    at = at or timezone.now()
    since = at - dt.timedelta(days=lookback_days)
    sensitive_paths = list(Category.objects.filter(sensitive=True).values_list("path", flat=True))
    sensitive_ids = set(
        Category.objects.filter(
            Q(pk__in=[]) if not sensitive_paths else _paths_q(sensitive_paths)
        ).values_list("pk", flat=True)
    )
    if connection.vendor == "postgresql":
        within = "b.first_at <= a.first_at + make_interval(days => %s)"
    else:
        within = "julianday(b.first_at) <= julianday(a.first_at) + %s"
    excluded = ", ".join(str(int(i)) for i in sorted(sensitive_ids)) or "-1"
    sql = f"""
        WITH firsts AS (
            SELECT i.client_id AS client_id, p.category_id AS category_id,
                   MIN(i.purchased_at) AS first_at
            FROM crm_purchaseitem i JOIN crm_product p ON p.id = i.product_id
            WHERE i.purchased_at >= %s AND i.purchased_at <= %s
              AND p.category_id NOT IN ({excluded})
            GROUP BY i.client_id, p.category_id
        ),
        singles AS (SELECT category_id, COUNT(*) AS n FROM firsts GROUP BY category_id),
        pairs AS (
            SELECT a.category_id AS a_id, b.category_id AS b_id, COUNT(*) AS n
            FROM firsts a JOIN firsts b
              ON b.client_id = a.client_id AND b.category_id <> a.category_id
             AND b.first_at >= a.first_at AND {within}
            GROUP BY a.category_id, b.category_id
        )
        SELECT pairs.a_id, pairs.b_id, pairs.n, sa.n, sb.n,
               (SELECT COUNT(DISTINCT client_id) FROM firsts)
        FROM pairs
        JOIN singles sa ON sa.category_id = pairs.a_id
        JOIN singles sb ON sb.category_id = pairs.b_id
        WHERE pairs.n >= %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [since, at, window_days, min_pair_clients])
        rows = cursor.fetchall()
    found: dict[tuple[int, int], ProductAssociation] = {}
    total_clients = 0
    for a_id, b_id, n_ab, n_a, n_b, total in rows:
        total_clients = int(total)
        confidence = n_ab / n_a
        lift = confidence / (n_b / total)
        if confidence < min_confidence or lift < min_lift:
            continue
        found[(a_id, b_id)] = ProductAssociation(
            antecedent_id=a_id,
            consequent_id=b_id,
            pair_clients=n_ab,
            antecedent_clients=n_a,
            consequent_clients=n_b,
            total_clients=total,
            support=round(n_ab / total, 6),
            confidence=round(confidence, 6),
            lift=round(lift, 4),
            mined_at=at,
        )
    with transaction.atomic():
        existing = set(ProductAssociation.objects.values_list("antecedent_id", "consequent_id"))
        ProductAssociation.objects.filter(status=AssociationStatus.PROPOSED).exclude(
            pk__in=[
                pk
                for pk, a, b in ProductAssociation.objects.values_list(
                    "pk", "antecedent_id", "consequent_id"
                )
                if (a, b) in found
            ]
        ).delete()
        ProductAssociation.objects.bulk_create(
            found.values(),
            update_conflicts=True,
            unique_fields=["antecedent", "consequent"],
            update_fields=[
                "pair_clients",
                "antecedent_clients",
                "consequent_clients",
                "total_clients",
                "support",
                "confidence",
                "lift",
                "mined_at",
                "updated_at",
            ],
        )
    created = sum(1 for key in found if key not in existing)
    return MiningResult(
        pairs=len(found),
        created=created,
        updated=len(found) - created,
        total_clients=total_clients,
        seconds=round(time.perf_counter() - started, 3),
    )


def _paths_q(paths: list[str]) -> Q:
    q = Q()
    for path in paths:
        q |= Q(path__startswith=path)
    return q


def association_decide(
    *, associations: Iterable[ProductAssociation] | Any, accept: bool, actor: Any = None
) -> int:
    """Accept (feeds the cross-sell strategy) or reject mined associations."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    ids = [a.pk for a in associations]
    return ProductAssociation.objects.filter(pk__in=ids).update(
        status=AssociationStatus.ACCEPTED if accept else AssociationStatus.REJECTED,
        decided_by=user,
        decided_at=timezone.now(),
    )
