"""factory_boy factories for the client and loyalty domains."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import factory
from django.utils import timezone

from crm.models import Brand, Category, Client, Product, Purchase, PurchaseItem
from loyalty.models import LoyaltyAccount, Tier
from offers.models import Offer, OfferVariant, PromoPool
from segments.models import Segment

_M = TypeVar("_M")

if TYPE_CHECKING:

    class ModelFactory(factory.django.DjangoModelFactory[_M]):
        """Typing-only view of ``DjangoModelFactory``: calling a factory class returns the model.

        At runtime ``FactoryMetaClass.__call__`` dispatches ``XFactory(**kw)`` to ``create()``
        (the default strategy), but that metaclass method is untyped, so mypy would infer the
        factory class itself. Declaring ``__new__`` here tells mypy the real result type.
        """

        # factory_boy's metaclass __call__ is untyped; mypy requires __new__ to return a
        # subclass instance, but here the call really returns the model instance.
        def __new__(cls, **kwargs: Any) -> _M: ...  # type: ignore[misc]

else:
    ModelFactory = factory.django.DjangoModelFactory


class ClientFactory(ModelFactory[Client]):
    class Meta:
        model = Client

    last_name = factory.Faker("last_name_male", locale="ru_RU")
    first_name = factory.Faker("first_name_male", locale="ru_RU")
    middle_name = factory.Faker("middle_name_male", locale="ru_RU")
    gender = "m"
    phone = factory.Sequence(lambda n: f"+7916{n:07d}")
    email = factory.Sequence(lambda n: f"client{n}@example.ru")
    city = "Москва"
    external_id = factory.Sequence(lambda n: f"EXT-{n:06d}")


class CategoryFactory(ModelFactory[Category]):
    class Meta:
        model = Category
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Категория {n}")
    slug = factory.Sequence(lambda n: f"category-{n}")

    @factory.post_generation
    def with_path(obj: Category, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            from crm.services import category_save

            category_save(category=obj)


class BrandFactory(ModelFactory[Brand]):
    class Meta:
        model = Brand

    name = factory.Sequence(lambda n: f"Бренд {n}")


class ProductFactory(ModelFactory[Product]):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Sequence(lambda n: f"Товар {n}")
    category = factory.SubFactory(CategoryFactory)
    brand = factory.SubFactory(BrandFactory)
    price = Decimal("1000.00")
    cost = Decimal("700.00")


class PurchaseFactory(ModelFactory[Purchase]):
    class Meta:
        model = Purchase

    client = factory.SubFactory(ClientFactory)
    purchased_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=1))
    total = Decimal("1000.00")
    external_id = factory.Sequence(lambda n: f"P-{n:07d}")


class PurchaseItemFactory(ModelFactory[PurchaseItem]):
    class Meta:
        model = PurchaseItem

    purchase = factory.SubFactory(PurchaseFactory)
    product = factory.SubFactory(ProductFactory)
    quantity = Decimal("1")
    unit_price = Decimal("1000.00")
    client = factory.SelfAttribute("purchase.client")
    purchased_at = factory.SelfAttribute("purchase.purchased_at")


class TierFactory(ModelFactory[Tier]):
    class Meta:
        model = Tier
        django_get_or_create = ("rank",)

    name = factory.Sequence(lambda n: f"Tier {n}")
    rank = 0
    earn_rate = Decimal("1.00")
    qualifying_spend = Decimal("0")


class LoyaltyAccountFactory(ModelFactory[LoyaltyAccount]):
    class Meta:
        model = LoyaltyAccount

    client = factory.SubFactory(ClientFactory)
    tier = factory.SubFactory(TierFactory)


# Offers (issue 5) --------------------------------------------------------------------------------


class PromoPoolFactory(ModelFactory[PromoPool]):
    class Meta:
        model = "offers.PromoPool"

    name = factory.Sequence(lambda n: f"Пул {n}")
    prefix = "LX-"
    code_length = 8


class OfferFactory(ModelFactory[Offer]):
    class Meta:
        model = "offers.Offer"

    name = factory.Sequence(lambda n: f"Предложение {n}")
    status = "active"
    channels = factory.LazyFunction(lambda: ["sms"])
    starts_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=1))
    ends_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=14))
    strategy = "fixed"
    benefit_kind = "percent"
    benefit_value = Decimal("10")


class OfferVariantFactory(ModelFactory[OfferVariant]):
    class Meta:
        model = "offers.OfferVariant"

    offer = factory.SubFactory(OfferFactory)
    name = "A"
    sms_text = (
        "{{ client.first_name }}, {{ benefit.text }} на {{ product.name }} "
        "до {{ valid_until|date:'d.m' }}. Покажите код {{ promo_code }}"
    )
    voice_script = "Здравствуйте, {{ client.name }}! {{ reason }}"
    email_subject = "{{ client.first_name }}, для вас {{ benefit.text }}"
    email_body = "<p>{{ reason }}</p>"


# Segments (issue 4) ------------------------------------------------------------------------------


class SegmentFactory(ModelFactory[Segment]):
    """A rule segment; rules are stored as given (validate with segments.rules.validate_rules or
    create through segments.services.segment_save when they must be normalized)."""

    class Meta:
        model = "segments.Segment"

    name = factory.Sequence(lambda n: f"Сегмент {n}")
    kind = "rules"
    rules = factory.LazyFunction(lambda: {"match": "all", "negate": False, "rules": []})
