"""The offer admin: create with variants (template checks, margin guard, warnings), preview,
cross-sell rules, mined associations (accept/reject) and promo pools with usage figures."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from crm.roles import MARKETER, OPERATOR
from offers.models import AssociationStatus, Offer, ProductAssociation, PromoCode, PromoPool
from offers.services import promo_code_assign_many
from tests.factories import ClientFactory, OfferFactory, OfferVariantFactory
from tests.offers.conftest import NOW

pytestmark = pytest.mark.django_db


def browser(role: str) -> HttpClient:
    user = User.objects.create_user(username=role.lower(), password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    http = HttpClient(HTTP_ACCEPT_LANGUAGE="en")
    http.force_login(user)
    return http


def offer_form(**overrides: Any) -> dict[str, Any]:
    now = timezone.localtime()
    data = {
        "name": "Корм: пора пополнить",
        "description": "",
        "goal": "replenish",
        "status": "active",
        "priority": "60",
        "channels": ["sms", "email"],
        "starts_at_0": now.strftime("%Y-%m-%d"),
        "starts_at_1": "00:00:00",
        "ends_at_0": (now + dt.timedelta(days=14)).strftime("%Y-%m-%d"),
        "ends_at_1": "00:00:00",
        "quantity_limit": "",
        "holdout_percent": "10",
        "benefit_kind": "percent",
        "benefit_value": "10",
        "benefit_text": "",
        "min_margin_percent": "",
        "promo_pool": "",
        "store": "",
        "strategy": "replenish",
        "products_per_message": "1",
        "lookback_days": "365",
        "recent_days": "30",
        "replenish_lead_days": "3",
        "reason_template": "",
        "variants-TOTAL_FORMS": "1",
        "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "1",
        "variants-MAX_NUM_FORMS": "1000",
        "variants-0-name": "A",
        "variants-0-weight": "1",
        "variants-0-sms_text": "{{ client.first_name }}, {{ benefit.text }} на {{ product.name }}",
        "variants-0-voice_script": "Здравствуйте, {{ client.name }}! {{ reason }}",
        "variants-0-email_subject": "Для вас",
        "variants-0-email_body": "<p>{{ reason }}</p>",
    }
    data.update(overrides)
    return data


def test_marketer_creates_an_offer_with_a_variant_and_sees_structure_warnings():
    http = browser(MARKETER)

    response = http.post(reverse("admin:offers_offer_add"), offer_form(), follow=True)

    assert response.status_code == 200
    offer = Offer.objects.get()
    assert offer.channels == ["sms", "email"]
    assert offer.variants.get().name == "A"
    shown = [str(m) for m in response.context["messages"]]
    assert "A: SMS: The text has no deadline ({{ valid_until }})." in shown
    assert any("call to action" in m for m in shown)


def test_refused_templates_and_margin_guard_are_form_errors(shop):
    http = browser(MARKETER)
    bad_template = offer_form(**{"variants-0-sms_text": "{% load static %}{{ client.password }}"})

    response = http.post(reverse("admin:offers_offer_add"), bad_template)

    assert response.status_code == 200
    assert Offer.objects.count() == 0
    errors = str(response.context["inline_admin_formsets"][0].formset.errors)
    assert "The tag {% load %} is not allowed" in errors

    # 40% off a product that costs 500 and sells for 800 leaves no margin
    too_deep = offer_form(
        strategy="fixed", benefit_value="40", fixed_products=[str(shop.whiskas.pk)]
    )
    response = http.post(reverse("admin:offers_offer_add"), too_deep)
    assert response.status_code == 200
    assert Offer.objects.count() == 0
    assert "below the minimum margin" in str(response.context["adminform"].form.errors)
    assert shop.whiskas.name in str(response.context["adminform"].form.errors)


def test_preview_renders_texts_reason_parts_reach_and_cost(shop, buy, settings):
    settings.OFFERS_SMS_PART_PRICE = "3.00"
    client = ClientFactory(first_name="Анна")
    shift = (timezone.now() - NOW).days  # the preview runs now, the fixture's clock is NOW
    for days in (88, 58, 28):
        buy(client, shop.whiskas, days - shift)
    offer = OfferFactory(strategy="replenish", channels=["sms", "call", "email"])
    OfferVariantFactory(offer=offer)
    ClientFactory.create_batch(3)
    http = browser(MARKETER)

    response = http.get(
        reverse("admin:offers_offer_preview", args=[offer.pk]), {"client": str(client.pk)}
    )

    assert response.status_code == 200
    proposal = response.context["proposal"]
    assert proposal.product_ids == [shop.whiskas.pk]
    body = response.content.decode()
    assert "Вы покупали «Whiskas" in body
    assert "Анна, скидка 10% на Whiskas" in body
    assert "UCS-2" in body
    estimate = response.context["estimate"]
    parts = proposal.texts["sms"].sms.parts
    assert estimate.reach == 4
    assert estimate.sms_cost == Decimal("3.00") * parts * estimate.recipients

    random = http.get(reverse("admin:offers_offer_preview", args=[offer.pk]), {"random": "1"})
    assert random.status_code == 200
    assert random.context["client"] is not None


def test_operator_may_view_but_not_add():
    http = browser(OPERATOR)
    offer = OfferFactory()
    OfferVariantFactory(offer=offer)

    assert http.get(reverse("admin:offers_offer_changelist")).status_code == 200
    assert http.get(reverse("admin:offers_offer_preview", args=[offer.pk])).status_code == 200
    assert http.get(reverse("admin:offers_offer_add")).status_code == 403


def test_associations_accept_and_reject_actions(shop):
    def association(a, b):
        return ProductAssociation.objects.create(
            antecedent=a,
            consequent=b,
            pair_clients=30,
            antecedent_clients=60,
            consequent_clients=90,
            total_clients=1000,
            support=0.03,
            confidence=0.5,
            lift=5.5,
            mined_at=timezone.now(),
        )

    good, bad = association(shop.phones, shop.power_banks), association(shop.phones, shop.cat_food)
    http = browser(MARKETER)
    url = reverse("admin:offers_productassociation_changelist")

    page = http.get(url)
    assert "5.5" in page.content.decode()
    http.post(url, {"action": "accept", "_selected_action": [good.pk]})
    http.post(url, {"action": "reject", "_selected_action": [bad.pk]})

    good.refresh_from_db()
    bad.refresh_from_db()
    assert (good.status, bad.status) == (AssociationStatus.ACCEPTED, AssociationStatus.REJECTED)
    assert good.decided_by.username == "marketer"


def test_cross_sell_rule_form_checks_reason_and_one_source(shop):
    http = browser(MARKETER)
    url = reverse("admin:offers_crosssellrule_add")
    base = {"name": "", "priority": "50", "is_active": "on"}

    both = http.post(
        url,
        {
            **base,
            "source_category": shop.phones.pk,
            "source_product": shop.phone.pk,
            "target_category": shop.power_banks.pk,
            "reason_text": "ok",
        },
    )
    assert "Give either the bought category or the bought product." in both.content.decode()
    bad_reason = http.post(
        url,
        {
            **base,
            "source_category": shop.phones.pk,
            "target_category": shop.power_banks.pk,
            "reason_text": "{{ fact.secret }}",
        },
    )
    assert "has no attribute" in bad_reason.content.decode()
    ok = http.post(
        url,
        {
            **base,
            "source_category": shop.phones.pk,
            "target_category": shop.power_banks.pk,
            "reason_text": "К смартфону — аккумулятор",
        },
    )
    assert ok.status_code == 302


def test_promo_pool_generate_upload_and_usage_figures():
    http = browser(MARKETER)

    response = http.post(
        reverse("admin:offers_promopool_add"),
        {"name": "Весна", "prefix": "SP-", "code_length": "6", "description": "", "generate": "5"},
    )
    assert response.status_code == 302
    pool = PromoPool.objects.get()
    assert PromoCode.objects.filter(pool=pool).count() == 5
    upload = SimpleUploadedFile("codes.csv", b"X1\nX2\nX1\n")
    http.post(
        reverse("admin:offers_promopool_change", args=[pool.pk]),
        {"name": "Весна", "prefix": "SP-", "code_length": "6", "description": "", "upload": upload},
    )
    assert PromoCode.objects.filter(pool=pool).count() == 7
    promo_code_assign_many(pool=pool, client_ids=[ClientFactory().pk])

    page = http.get(reverse("admin:offers_promopool_changelist"))
    row = next(r for r in page.context["cl"].result_list if r.pk == pool.pk)
    assert (row.total, row.assigned, row.redeemed) == (7, 1, 0)
