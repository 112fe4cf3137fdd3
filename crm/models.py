"""The client domain: clients, consent, catalog, purchases, behavioural events, audit log.

Current consent state, catalog paths and denormalized purchase-item columns are written by the
services in ``crm/services.py`` only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from phonenumber_field.modelfields import PhoneNumberField
from timezone_field import TimeZoneField


class TimeStamped(models.Model):
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        abstract = True


class Gender(models.TextChoices):
    FEMALE = "f", _("female")
    MALE = "m", _("male")
    UNKNOWN = "", _("not specified")


class Channel(models.TextChoices):
    """Channels a client can be contacted through (and consent for)."""

    SMS = "sms", _("SMS")
    CALL = "call", _("phone call")
    EMAIL = "email", _("e-mail")


class ContactTime(models.TextChoices):
    ANY = "", _("any time")
    MORNING = "morning", _("morning")
    AFTERNOON = "afternoon", _("afternoon")
    EVENING = "evening", _("evening")


class FamilyStatus(models.TextChoices):
    UNKNOWN = "", _("not specified")
    SINGLE = "single", _("single")
    MARRIED = "married", _("married")
    DIVORCED = "divorced", _("divorced")
    WIDOWED = "widowed", _("widowed")


class Education(models.TextChoices):
    UNKNOWN = "", _("not specified")
    SECONDARY = "secondary", _("secondary")
    VOCATIONAL = "vocational", _("vocational")
    HIGHER = "higher", _("higher")
    POSTGRADUATE = "postgraduate", _("postgraduate")


class ClientSource(models.TextChoices):
    STORE = "store", _("store")
    WEB = "web", _("web site")
    APP = "app", _("mobile app")
    CALL_CENTER = "call_center", _("call center")
    IMPORT = "import", _("file import")
    API = "api", _("API")
    DEMO = "demo", _("demo data")


class PetKind(models.TextChoices):
    CAT = "cat", _("cat")
    DOG = "dog", _("dog")
    BIRD = "bird", _("bird")
    FISH = "fish", _("fish")
    RODENT = "rodent", _("rodent")
    REPTILE = "reptile", _("reptile")
    OTHER = "other", _("other")


class Interest(TimeStamped):
    name = models.CharField(_("name"), max_length=100, unique=True)

    class Meta:
        verbose_name = _("interest")
        verbose_name_plural = _("interests")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Client(TimeStamped):
    # Lookup columns are indexed in Meta with plain B-trees: `db_index`/`unique` on a CharField
    # also builds a LIKE-pattern twin on PostgreSQL that no query here uses and every insert pays.
    external_id = models.CharField(_("external ID"), max_length=64, null=True, blank=True)
    last_name = models.CharField(_("last name"), max_length=100, blank=True)
    first_name = models.CharField(_("first name"), max_length=100, blank=True)
    middle_name = models.CharField(_("middle name"), max_length=100, blank=True)
    gender = models.CharField(_("gender"), max_length=1, choices=Gender.choices, blank=True)
    birth_date = models.DateField(_("birth date"), null=True, blank=True)
    phone = PhoneNumberField(_("phone"), blank=True)
    email = models.EmailField(_("e-mail"), blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    region = models.CharField(_("district / region"), max_length=150, blank=True)
    time_zone = TimeZoneField(_("time zone"), default=settings.TIME_ZONE, use_pytz=False)
    preferred_channel = models.CharField(
        _("preferred channel"), max_length=10, choices=Channel.choices, blank=True
    )
    preferred_contact_time = models.CharField(
        _("preferred contact time"), max_length=10, choices=ContactTime.choices, blank=True
    )
    family_status = models.CharField(
        _("family status"), max_length=10, choices=FamilyStatus.choices, blank=True
    )
    occupation = models.CharField(_("occupation"), max_length=150, blank=True)
    education = models.CharField(
        _("education"), max_length=15, choices=Education.choices, blank=True
    )
    interests = models.ManyToManyField(
        Interest, verbose_name=_("interests"), blank=True, related_name="clients"
    )
    attributes = models.JSONField(
        _("attributes"), default=dict, blank=True, help_text=_("Integration-specific data.")
    )
    source = models.CharField(
        _("source"), max_length=15, choices=ClientSource.choices, default=ClientSource.STORE
    )
    is_anonymized = models.BooleanField(_("anonymized"), default=False)
    anonymized_at = models.DateTimeField(_("anonymized at"), null=True, blank=True)

    class Meta:
        verbose_name = _("client")
        verbose_name_plural = _("clients")
        permissions = [
            ("export_personal_data", _("Can export a client's personal data")),
            ("anonymize_client", _("Can anonymize clients (irreversible)")),
        ]
        constraints = [
            models.UniqueConstraint(fields=["external_id"], name="client_external_id_unique")
        ]
        indexes = [
            models.Index(fields=["last_name", "first_name"], name="client_name_idx"),
            models.Index(fields=["phone"], name="client_phone_idx"),
            models.Index(fields=["email"], name="client_email_idx"),
            models.Index(fields=["city"], name="client_city_idx"),
        ]

    def __str__(self) -> str:
        name = " ".join(p for p in (self.last_name, self.first_name, self.middle_name) if p)
        return name or (str(self.phone) if self.phone else f"#{self.pk}")


class Child(models.Model):
    client = models.ForeignKey(
        Client, on_delete=models.CASCADE, related_name="children", verbose_name=_("client")
    )
    birth_year = models.PositiveSmallIntegerField(_("birth year"))
    gender = models.CharField(_("gender"), max_length=1, choices=Gender.choices, blank=True)

    class Meta:
        verbose_name = _("child")
        verbose_name_plural = _("children")
        constraints = [
            models.CheckConstraint(
                condition=Q(birth_year__gte=1900) & Q(birth_year__lte=2100),
                name="child_birth_year_sane",
            )
        ]

    def __str__(self) -> str:
        return str(self.birth_year)


class Pet(models.Model):
    client = models.ForeignKey(
        Client, on_delete=models.CASCADE, related_name="pets", verbose_name=_("client")
    )
    kind = models.CharField(_("kind"), max_length=10, choices=PetKind.choices)
    name = models.CharField(_("name"), max_length=50, blank=True)

    class Meta:
        verbose_name = _("pet")
        verbose_name_plural = _("pets")
        indexes = [models.Index(fields=["kind", "client"], name="pet_kind_client_idx")]

    def __str__(self) -> str:
        return self.get_kind_display()


# Consent ---------------------------------------------------------------------------------------


class ConsentPurpose(models.TextChoices):
    MARKETING = "marketing", _("marketing")
    PROFILING = "profiling", _("profiling and personalization")


class ConsentAction(models.TextChoices):
    GRANTED = "granted", _("granted")
    WITHDRAWN = "withdrawn", _("withdrawn")


class ConsentSource(models.TextChoices):
    WEB_FORM = "web_form", _("web form")
    STORE = "store", _("store")
    IVR = "ivr", _("IVR")
    CALL_CENTER = "call_center", _("call center")
    IMPORT = "import", _("import")
    API = "api", _("API")
    INBOUND_SMS = "inbound_sms", _("inbound SMS (STOP)")
    EMAIL_UNSUBSCRIBE = "email_unsubscribe", _("e-mail unsubscribe link")
    ADMIN = "admin", _("admin")
    ANONYMIZATION = "anonymization", _("anonymization")


class ConsentEvent(models.Model):
    """Append-only consent history (152-FZ): who said what, when, where, under which wording.

    UPDATE and DELETE are refused by a database trigger (migration 0002).
    """

    client = models.ForeignKey(
        Client,
        on_delete=models.PROTECT,
        related_name="consent_events",
        verbose_name=_("client"),
        db_index=False,  # a composite index below leads with this column
    )
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    purpose = models.CharField(_("purpose"), max_length=15, choices=ConsentPurpose.choices)
    action = models.CharField(_("action"), max_length=10, choices=ConsentAction.choices)
    source = models.CharField(_("source"), max_length=20, choices=ConsentSource.choices)
    occurred_at = models.DateTimeField(_("occurred at"))
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("recorded by"),
    )
    actor_label = models.CharField(
        _("actor"), max_length=150, blank=True, help_text=_("Who acted when not a user: a system.")
    )
    wording_version = models.CharField(_("wording version"), max_length=50)
    evidence = models.TextField(
        _("evidence"), blank=True, help_text=_("Call record id, form submission id, SMS text...")
    )
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("consent event")
        verbose_name_plural = _("consent history")
        indexes = [
            models.Index(
                fields=["client", "channel", "purpose", "-occurred_at"],
                name="consentevent_client_time_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.get_channel_display()} / {self.purpose}"


class Consent(models.Model):
    """Current consent state per client x channel x purpose, derived from ConsentEvent."""

    client = models.ForeignKey(
        Client, on_delete=models.CASCADE, related_name="consents", verbose_name=_("client")
    )
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    purpose = models.CharField(_("purpose"), max_length=15, choices=ConsentPurpose.choices)
    is_granted = models.BooleanField(_("granted"))
    changed_at = models.DateTimeField(_("changed at"))
    source = models.CharField(_("source"), max_length=20, choices=ConsentSource.choices)
    wording_version = models.CharField(_("wording version"), max_length=50)
    last_event = models.ForeignKey(
        ConsentEvent, on_delete=models.PROTECT, related_name="+", verbose_name=_("last event")
    )

    class Meta:
        verbose_name = _("consent")
        verbose_name_plural = _("consents")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "channel", "purpose"], name="consent_one_per_client_channel"
            )
        ]
        indexes = [
            models.Index(
                fields=["channel", "purpose", "client"],
                condition=Q(is_granted=True),
                name="consent_granted_idx",
            )
        ]

    def __str__(self) -> str:
        state = _("granted") if self.is_granted else _("withdrawn")
        return f"{self.get_channel_display()} / {self.get_purpose_display()}: {state}"


# Catalog ---------------------------------------------------------------------------------------


class Category(TimeStamped):
    name = models.CharField(_("name"), max_length=150)
    slug = models.SlugField(_("slug"), max_length=150, unique=True)
    parent = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="children",
        verbose_name=_("parent"),
    )
    path = models.CharField(
        _("path"),
        max_length=255,
        editable=False,
        db_index=True,
        default="",
        help_text=_("Ancestor ids, '/1/7/', for subtree queries."),
    )
    sensitive = models.BooleanField(
        _("sensitive"),
        default=False,
        help_text=_("Health or intimate goods: never named in offers or explanations."),
    )

    class Meta:
        verbose_name = _("category")
        verbose_name_plural = _("categories")
        ordering = ["path"]

    def __str__(self) -> str:
        return self.name


class Brand(TimeStamped):
    name = models.CharField(_("name"), max_length=150, unique=True)
    is_private_label = models.BooleanField(_("private label"), default=False)

    class Meta:
        verbose_name = _("brand")
        verbose_name_plural = _("brands")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Product(TimeStamped):
    sku = models.CharField(_("SKU"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=255)
    category = models.ForeignKey(
        Category, on_delete=models.PROTECT, related_name="products", verbose_name=_("category")
    )
    brand = models.ForeignKey(
        Brand,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="products",
        verbose_name=_("brand"),
    )
    price = models.DecimalField(_("price"), max_digits=12, decimal_places=2)
    cost = models.DecimalField(_("cost"), max_digits=12, decimal_places=2, null=True, blank=True)
    in_stock = models.BooleanField(_("in stock"), default=True)
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="product_price_nonnegative"),
            models.CheckConstraint(
                condition=Q(cost__isnull=True) | Q(cost__gte=0), name="product_cost_nonnegative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


# Purchases and events --------------------------------------------------------------------------


class SalesChannel(models.TextChoices):
    STORE = "store", _("store")
    ONLINE = "online", _("online shop")
    APP = "app", _("mobile app")
    PHONE = "phone", _("phone order")


class Purchase(TimeStamped):
    external_id = models.CharField(_("external ID"), max_length=64, null=True, blank=True)
    client = models.ForeignKey(
        Client,
        on_delete=models.PROTECT,
        related_name="purchases",
        verbose_name=_("client"),
        db_index=False,  # a composite index below leads with this column
    )
    purchased_at = models.DateTimeField(_("purchased at"))
    channel = models.CharField(
        _("channel"), max_length=10, choices=SalesChannel.choices, default=SalesChannel.STORE
    )
    store = models.CharField(_("store"), max_length=100, blank=True)
    total = models.DecimalField(_("total"), max_digits=12, decimal_places=2)

    class Meta:
        verbose_name = _("purchase")
        verbose_name_plural = _("purchases")
        indexes = [
            models.Index(fields=["client", "-purchased_at"], name="purchase_client_time_idx"),
            models.Index(fields=["-purchased_at"], name="purchase_time_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(total__gte=0), name="purchase_total_nonnegative"),
            models.UniqueConstraint(fields=["external_id"], name="purchase_external_id_unique"),
        ]

    def __str__(self) -> str:
        return self.external_id or f"#{self.pk}"


class PurchaseItem(models.Model):
    """A line of a purchase.

    ``client`` and ``purchased_at`` copy the purchase's so that segment rules over items
    ("bought brand X in the last 90 days") read one table with one index.
    """

    purchase = models.ForeignKey(
        Purchase, on_delete=models.CASCADE, related_name="items", verbose_name=_("purchase")
    )
    product = models.ForeignKey(
        Product,
        on_delete=models.PROTECT,
        related_name="purchase_items",
        verbose_name=_("product"),
        db_index=False,  # a composite index below leads with this column
    )
    quantity = models.DecimalField(_("quantity"), max_digits=10, decimal_places=3, default=1)
    unit_price = models.DecimalField(_("unit price"), max_digits=12, decimal_places=2)
    discount = models.DecimalField(_("discount"), max_digits=12, decimal_places=2, default=0)
    client = models.ForeignKey(
        Client,
        on_delete=models.PROTECT,
        related_name="purchase_items",
        verbose_name=_("client"),
        db_index=False,  # a composite index below leads with this column
    )
    purchased_at = models.DateTimeField(_("purchased at"))

    class Meta:
        verbose_name = _("purchase item")
        verbose_name_plural = _("purchase items")
        indexes = [
            models.Index(fields=["client", "-purchased_at"], name="item_client_time_idx"),
            models.Index(fields=["product", "purchased_at"], name="item_product_time_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="item_quantity_positive"),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="item_price_nonnegative"),
            models.CheckConstraint(condition=Q(discount__gte=0), name="item_discount_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.product_id} x {self.quantity}"

    @property
    def line_total(self):  # noqa: ANN201 - Decimal
        return self.unit_price * self.quantity - self.discount


class EventType(models.TextChoices):
    PRODUCT_VIEW = "product_view", _("product view")
    CART_ADD = "cart_add", _("added to cart")
    CART_REMOVE = "cart_remove", _("removed from cart")
    CHECKOUT_START = "checkout_start", _("checkout started")
    WISHLIST_ADD = "wishlist_add", _("added to wishlist")
    SEARCH = "search", _("search")
    APP_OPEN = "app_open", _("app opened")
    EMAIL_OPEN = "email_open", _("e-mail opened")
    LINK_CLICK = "link_click", _("link clicked")
    CALL_IN = "call_in", _("incoming call")
    CALL_OUT = "call_out", _("outgoing call")
    STORE_VISIT = "store_visit", _("store visit")


class Event(models.Model):
    client = models.ForeignKey(
        Client,
        on_delete=models.CASCADE,
        related_name="events",
        verbose_name=_("client"),
        db_index=False,  # a composite index below leads with this column
    )
    type = models.CharField(_("type"), max_length=20, choices=EventType.choices)
    occurred_at = models.DateTimeField(_("occurred at"))
    product = models.ForeignKey(
        Product,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="events",
        verbose_name=_("product"),
    )
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        indexes = [
            models.Index(fields=["client", "-occurred_at"], name="event_client_time_idx"),
            models.Index(fields=["type", "occurred_at"], name="event_type_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} @ {self.occurred_at:%Y-%m-%d %H:%M}"


# Audit -----------------------------------------------------------------------------------------


class AuditAction(models.TextChoices):
    CONSENT_CHANGED = "consent_changed", _("consent changed")
    CLIENT_CREATED = "client_created", _("client created")
    CLIENT_UPDATED = "client_updated", _("client updated")
    CARD_VIEWED = "card_viewed", _("client card viewed")
    POINTS_REDEEMED = "points_redeemed", _("points redeemed")
    POINTS_ADJUSTED = "points_adjusted", _("points adjusted")
    CLIENT_ANONYMIZED = "client_anonymized", _("client anonymized")
    DATA_EXPORTED = "data_exported", _("personal data exported")


class AuditLog(models.Model):
    """Who did what to whose data. Append-only, read-only in the admin."""

    occurred_at = models.DateTimeField(_("occurred at"), auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
    )
    actor_label = models.CharField(_("actor"), max_length=150, blank=True)
    action = models.CharField(_("action"), max_length=30, choices=AuditAction.choices)
    client = models.ForeignKey(
        Client,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_entries",
        verbose_name=_("client"),
    )
    changes = models.JSONField(_("details"), default=dict, blank=True)

    class Meta:
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log")
        # Without it a user sees only the entries of their own actions.
        permissions = [("view_all_auditlog", _("Can see every user's audit entries"))]
        indexes = [models.Index(fields=["client", "-occurred_at"], name="audit_client_time_idx")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} @ {self.occurred_at:%Y-%m-%d %H:%M}"


# File import -----------------------------------------------------------------------------------


class ImportKind(models.TextChoices):
    CLIENTS = "clients", _("clients")
    PRODUCTS = "products", _("products")
    PURCHASES = "purchases", _("purchases")
    CONSENTS = "consents", _("consents")


class ImportStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    DONE = "done", _("done")
    FAILED = "failed", _("failed")


class ImportJob(TimeStamped):
    """One uploaded file and its import: first a dry run (preview), then, when confirmed, the
    import itself. Rows go through the same bulk services as the REST API (``crm/bulk.py``)."""

    kind = models.CharField(_("kind"), max_length=15, choices=ImportKind.choices)
    file = models.FileField(_("file"), upload_to="imports/%Y/%m/", max_length=255)
    original_name = models.CharField(_("file name"), max_length=255, blank=True)
    dry_run = models.BooleanField(
        _("dry run"), default=True, help_text=_("A preview: nothing is stored.")
    )
    status = models.CharField(
        _("status"), max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
    )
    total_rows = models.PositiveIntegerField(_("rows in file"), null=True, blank=True)
    processed_rows = models.PositiveIntegerField(_("rows processed"), default=0)
    created = models.PositiveIntegerField(_("created"), default=0)
    updated = models.PositiveIntegerField(_("updated"), default=0)
    unchanged = models.PositiveIntegerField(_("unchanged"), default=0)
    error_count = models.PositiveIntegerField(_("rows with errors"), default=0)
    errors = models.JSONField(
        _("errors"), default=list, blank=True, help_text=_("The first errors: row, field, message.")
    )
    message = models.TextField(_("message"), blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("import job")
        verbose_name_plural = _("import jobs")
        ordering = ["-id"]
        permissions = [
            ("api_write", _("Can push data through the REST API")),
            ("export_clients", _("Can export clients to files")),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.original_name or self.file.name}"

    @property
    def percent(self) -> int:
        if not self.total_rows:
            return 100 if self.status == ImportStatus.DONE else 0
        return min(100, round(100 * self.processed_rows / self.total_rows))


# Call-center operators ---------------------------------------------------------------------------


class OperatorProfile(TimeStamped):
    """A staff user's PBX extension: where click-to-call rings first and which incoming calls
    the card's pop-up shows. Django's user model has no place for it."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="operator_profile",
        verbose_name=_("user"),
    )
    extension = models.CharField(_("PBX extension"), max_length=32, blank=True)

    class Meta:
        verbose_name = _("operator profile")
        verbose_name_plural = _("operator profiles")

    def __str__(self) -> str:
        return f"{self.user_id}: {self.extension or '-'}"
