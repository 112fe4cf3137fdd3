"""Offers: what is offered, to whom, how it is said and why.

An ``Offer`` names its benefit, its target and exclusion segments, the channels it may use, and a
product strategy that picks products per client (``offers/strategies.py``). Its texts live on
``OfferVariant`` rows (A/B variants with weights); a holdout share gets nothing. Promo codes come
from a ``PromoPool``; cross-sell rules are written by marketers, ``ProductAssociation`` rows are
mined nightly from purchases. Writes go through ``offers/services.py``; the engine that turns
clients into proposals is ``offers/engine.py``.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.models import Category, Client, Product, Purchase, TimeStamped
from segments.models import Segment


class OfferGoal(models.TextChoices):
    REPLENISH = "replenish", _("replenishment")
    CROSS_SELL = "cross_sell", _("cross-sell")
    WIN_BACK = "win_back", _("win back")
    OWN_BRAND = "own_brand", _("own brand")
    LAUNCH = "launch", _("new product launch")
    BIRTHDAY = "birthday", _("birthday")
    LOYALTY = "loyalty", _("loyalty")
    GENERIC = "generic", _("generic")


class OfferStatus(models.TextChoices):
    DRAFT = "draft", _("draft")
    ACTIVE = "active", _("active")
    PAUSED = "paused", _("paused")
    FINISHED = "finished", _("finished")


class BenefitKind(models.TextChoices):
    PERCENT = "percent", _("percent discount")
    AMOUNT = "amount", _("fixed amount off")
    POINTS = "points", _("bonus points")
    GIFT = "gift", _("gift")
    FREE_DELIVERY = "free_delivery", _("free delivery")
    NONE = "none", _("none (information only)")


class ProductStrategy(models.TextChoices):
    FIXED = "fixed", _("fixed products or category")
    REPLENISH = "replenish", _("replenish: the client's regular product, due now")
    CROSS_SELL = "cross_sell", _("cross-sell: a complement of a recent purchase")
    SAME_BRAND = "same_brand", _("same brand: new or popular products of a brand bought")
    OWN_BRAND = "own_brand", _("own brand: the private-label alternative")
    NEW_ARRIVALS = "new_arrivals", _("new arrivals in the favourite category")


class PromoPool(TimeStamped):
    """Single-use promo codes, generated with a prefix and a length or uploaded."""

    name = models.CharField(_("name"), max_length=150, unique=True)
    prefix = models.CharField(_("prefix"), max_length=20, blank=True)
    code_length = models.PositiveSmallIntegerField(
        _("random part length"),
        default=8,
        validators=[MinValueValidator(4), MaxValueValidator(32)],
    )
    description = models.TextField(_("description"), blank=True)

    class Meta:
        verbose_name = _("promo code pool")
        verbose_name_plural = _("promo code pools")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(code_length__gte=4) & Q(code_length__lte=32),
                name="promopool_code_length_sane",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Offer(TimeStamped):
    name = models.CharField(_("name"), max_length=200, unique=True)
    description = models.TextField(_("description"), blank=True)
    goal = models.CharField(
        _("goal"), max_length=20, choices=OfferGoal.choices, default=OfferGoal.GENERIC
    )
    status = models.CharField(
        _("status"), max_length=10, choices=OfferStatus.choices, default=OfferStatus.DRAFT
    )
    priority = models.PositiveSmallIntegerField(
        _("priority"), default=50, help_text=_("0-100; higher is offered first.")
    )
    segments = models.ManyToManyField(
        Segment,
        verbose_name=_("target segments"),
        related_name="offers",
        blank=True,
        help_text=_("Clients in any of these segments. Empty means all clients."),
    )
    exclude_segments = models.ManyToManyField(
        Segment,
        verbose_name=_("exclusion segments"),
        related_name="excluded_from_offers",
        blank=True,
        help_text=_("Clients in any of these segments never get the offer."),
    )
    channels = models.JSONField(
        _("channels"), default=list, blank=True, help_text=_("sms, call, email.")
    )
    starts_at = models.DateTimeField(_("valid from"))
    ends_at = models.DateTimeField(_("valid until"))
    quantity_limit = models.PositiveIntegerField(
        _("quantity limit"),
        null=True,
        blank=True,
        help_text=_("At most this many promo codes are handed out for the offer."),
    )

    benefit_kind = models.CharField(
        _("benefit"), max_length=15, choices=BenefitKind.choices, default=BenefitKind.NONE
    )
    benefit_value = models.DecimalField(
        _("benefit value"),
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        help_text=_("Percent, roubles or points, by the kind of benefit."),
    )
    benefit_text = models.CharField(
        _("benefit wording"),
        max_length=200,
        blank=True,
        help_text=_(
            "How the benefit is said, e.g. 'скидка 10%' or 'подарок — миска'. "
            "Derived from the kind and value when empty."
        ),
    )
    min_margin_percent = models.DecimalField(
        _("minimum margin, %"),
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_(
            "The discount must leave at least this margin over cost; "
            "empty means the OFFERS_MIN_MARGIN_PERCENT setting."
        ),
    )

    strategy = models.CharField(
        _("product strategy"),
        max_length=15,
        choices=ProductStrategy.choices,
        default=ProductStrategy.FIXED,
    )
    fixed_products = models.ManyToManyField(
        Product, verbose_name=_("fixed products"), related_name="+", blank=True
    )
    fixed_category = models.ForeignKey(
        Category,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("category"),
        help_text=_(
            "Fixed strategy: its most popular products. Other strategies: only products of "
            "this category (with subcategories) are proposed."
        ),
    )
    products_per_message = models.PositiveSmallIntegerField(
        _("products per message"),
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
    )
    lookback_days = models.PositiveIntegerField(
        _("history window, days"),
        default=365,
        help_text=_("How far back purchases count for the strategy."),
    )
    recent_days = models.PositiveIntegerField(
        _("recent purchase, days"),
        default=30,
        help_text=_(
            "Cross-sell: the purchase that triggers it is at most this old. "
            "New arrivals and same brand: a product is new for this many days."
        ),
    )
    replenish_lead_days = models.PositiveSmallIntegerField(
        _("replenish lead, days"),
        default=3,
        help_text=_("Replenish: offer this many days before the client's usual interval ends."),
    )
    allow_sensitive = models.BooleanField(
        _("may name sensitive products"),
        default=False,
        help_text=_(
            "Products of sensitive categories are proposed only when this is set. "
            "Reasons never speak of them either way."
        ),
    )
    reason_template = models.TextField(
        _("reason template"),
        blank=True,
        help_text=_("Overrides the strategy's default reason; context: fact, client, products."),
    )
    promo_pool = models.ForeignKey(
        PromoPool,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="offers",
        verbose_name=_("promo code pool"),
    )
    holdout_percent = models.DecimalField(
        _("holdout, %"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        help_text=_("This share of eligible clients is a control group and gets nothing."),
    )
    store = models.CharField(
        _("store"), max_length=150, blank=True, help_text=_("Said as {{ store }}.")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )

    class Meta:
        verbose_name = _("offer")
        verbose_name_plural = _("offers")
        ordering = ["-priority", "name"]
        indexes = [models.Index(fields=["status", "starts_at", "ends_at"], name="offer_live_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="offer_window_valid"
            ),
            models.CheckConstraint(condition=Q(priority__lte=100), name="offer_priority_range"),
            models.CheckConstraint(
                condition=Q(holdout_percent__gte=0) & Q(holdout_percent__lte=100),
                name="offer_holdout_range",
            ),
            models.CheckConstraint(
                condition=Q(benefit_value__gte=0), name="offer_benefit_nonnegative"
            ),
            models.CheckConstraint(
                condition=~Q(benefit_kind="percent") | Q(benefit_value__lte=100),
                name="offer_percent_at_most_100",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class OfferVariant(TimeStamped):
    """One wording of an offer (an A/B arm). Templates use the documented context only."""

    offer = models.ForeignKey(
        Offer, on_delete=models.CASCADE, related_name="variants", verbose_name=_("offer")
    )
    name = models.CharField(_("name"), max_length=50, default="A")
    weight = models.PositiveSmallIntegerField(
        _("weight"), default=1, help_text=_("Share of the non-holdout clients, by weight.")
    )
    sms_text = models.TextField(_("SMS text"), blank=True)
    transliterate_sms = models.BooleanField(
        _("transliterate SMS to fit one part"),
        default=False,
        help_text=_("Latin letters (GSM-7) when the Cyrillic text needs more than one part."),
    )
    voice_script = models.TextField(_("voice script"), blank=True)
    email_subject = models.CharField(_("e-mail subject"), max_length=255, blank=True)
    email_body = models.TextField(_("e-mail body"), blank=True)

    class Meta:
        verbose_name = _("variant")
        verbose_name_plural = _("variants (A/B)")
        ordering = ["offer", "name"]
        constraints = [
            models.UniqueConstraint(fields=["offer", "name"], name="offervariant_unique_name"),
            models.CheckConstraint(condition=Q(weight__gt=0), name="offervariant_weight_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.offer_id}/{self.name}"


class CrossSellRule(TimeStamped):
    """Bought A (a product or anything in a category) -> offer B, with the reason to say."""

    name = models.CharField(_("name"), max_length=150, blank=True)
    source_category = models.ForeignKey(
        Category,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("bought category"),
    )
    source_product = models.ForeignKey(
        Product,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("bought product"),
    )
    target_category = models.ForeignKey(
        Category,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("offer category"),
    )
    target_product = models.ForeignKey(
        Product,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("offer product"),
    )
    reason_text = models.CharField(
        _("reason"),
        max_length=300,
        blank=True,
        help_text=_("E.g. 'к вашему {{ fact.product }} пригодится внешний аккумулятор'."),
    )
    priority = models.PositiveSmallIntegerField(_("priority"), default=50)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("cross-sell rule")
        verbose_name_plural = _("cross-sell rules")
        ordering = ["-priority", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    (Q(source_category__isnull=False) & Q(source_product__isnull=True))
                    | (Q(source_category__isnull=True) & Q(source_product__isnull=False))
                ),
                name="crosssell_one_source",
            ),
            models.CheckConstraint(
                condition=(
                    (Q(target_category__isnull=False) & Q(target_product__isnull=True))
                    | (Q(target_category__isnull=True) & Q(target_product__isnull=False))
                ),
                name="crosssell_one_target",
            ),
        ]

    def __str__(self) -> str:
        source = self.source_product or self.source_category
        target = self.target_product or self.target_category
        return self.name or f"{source} → {target}"


class AssociationStatus(models.TextChoices):
    PROPOSED = "proposed", _("proposed")
    ACCEPTED = "accepted", _("accepted")
    REJECTED = "rejected", _("rejected")


class ProductAssociation(TimeStamped):
    """Clients who buy category A go on to buy category B (mined nightly from purchases).

    Support, confidence and lift count clients: support = share of buying clients who bought A
    and then B within the window; confidence = of those who bought A; lift = confidence over the
    share who bought B at all. Only accepted rows feed the cross-sell strategy.
    """

    antecedent = models.ForeignKey(
        Category, on_delete=models.CASCADE, related_name="+", verbose_name=_("bought")
    )
    consequent = models.ForeignKey(
        Category, on_delete=models.CASCADE, related_name="+", verbose_name=_("then bought")
    )
    pair_clients = models.PositiveIntegerField(_("clients with both"))
    antecedent_clients = models.PositiveIntegerField(_("clients with A"))
    consequent_clients = models.PositiveIntegerField(_("clients with B"))
    total_clients = models.PositiveIntegerField(_("buying clients"))
    support = models.FloatField(_("support"))
    confidence = models.FloatField(_("confidence"))
    lift = models.FloatField(_("lift"))
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=AssociationStatus.choices,
        default=AssociationStatus.PROPOSED,
    )
    reason_text = models.CharField(_("reason"), max_length=300, blank=True)
    mined_at = models.DateTimeField(_("mined at"))
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("decided by"),
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)

    class Meta:
        verbose_name = _("mined association")
        verbose_name_plural = _("mined associations")
        ordering = ["-lift"]
        constraints = [
            models.UniqueConstraint(
                fields=["antecedent", "consequent"], name="association_unique_pair"
            ),
            models.CheckConstraint(
                condition=~Q(antecedent=models.F("consequent")), name="association_distinct"
            ),
        ]
        indexes = [models.Index(fields=["status", "-lift"], name="association_status_lift_idx")]

    def __str__(self) -> str:
        return f"{self.antecedent_id} → {self.consequent_id}"


class PromoCode(models.Model):
    """A single-use code: free, then assigned to one client, then perhaps redeemed.

    The assignment is written once by ``promo_code_assign_many``; a client holds at most one
    code of a pool; a redeemed code is never assigned or redeemed again.
    """

    pool = models.ForeignKey(
        PromoPool, on_delete=models.CASCADE, related_name="codes", verbose_name=_("pool")
    )
    code = models.CharField(_("code"), max_length=64, unique=True)
    client = models.ForeignKey(
        Client,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="promo_codes",
        verbose_name=_("client"),
    )
    offer = models.ForeignKey(
        Offer,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="promo_codes",
        verbose_name=_("offer"),
    )
    assigned_at = models.DateTimeField(_("assigned at"), null=True, blank=True)
    redeemed_at = models.DateTimeField(_("redeemed at"), null=True, blank=True)
    redeemed_purchase = models.ForeignKey(
        Purchase,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="promo_codes",
        verbose_name=_("purchase"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("promo code")
        verbose_name_plural = _("promo codes")
        permissions = [("redeem_promocode", _("Can redeem promo codes"))]
        constraints = [
            models.UniqueConstraint(
                fields=["pool", "client"],
                condition=Q(client__isnull=False),
                name="promocode_one_per_client_pool",
            ),
            models.CheckConstraint(
                condition=(Q(client__isnull=True) & Q(assigned_at__isnull=True))
                | (Q(client__isnull=False) & Q(assigned_at__isnull=False)),
                name="promocode_assignment_complete",
            ),
            models.CheckConstraint(
                condition=Q(redeemed_at__isnull=True) | Q(client__isnull=False),
                name="promocode_redeemed_is_assigned",
            ),
        ]
        indexes = [
            models.Index(
                fields=["pool", "id"], condition=Q(client__isnull=True), name="promocode_free_idx"
            ),
            models.Index(fields=["client", "pool"], name="promocode_client_idx"),
        ]

    def __str__(self) -> str:
        return self.code
