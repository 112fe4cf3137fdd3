"""Invariant 6 where an offer campaign proposes its coming batches ahead.

On PostgreSQL a run's next batches are proposed by the offer engine in threads
(``_CandidateBuilder.propose_ahead``), before the planner locks and plans them; a client's code
may be redeemed in between. The engine's answer is then stale, and only planning stands between
the client and the offer again: a client whose code of the pool is redeemed gets no message, and
every message carries the one code its own client holds.
"""

from __future__ import annotations

from typing import Any

import pytest

from crm.models import Channel
from messaging.models import CampaignRun, Message, MessageStatus, RunStatus
from messaging.services import campaigns
from messaging.services.campaigns import campaign_run_plan
from offers.models import PromoCode
from offers.services import promo_code_assign_many, promo_code_redeem, promo_pool_generate
from tests.concurrency import run_together
from tests.factories import PromoPoolFactory
from tests.messaging.conftest import NOW, make_world

pytestmark = [pytest.mark.usefixtures("postgres"), pytest.mark.django_db(transaction=True)]


def test_a_code_redeemed_after_its_batch_was_proposed_ahead_is_not_offered_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an offer with a pool of single-use codes, six clients in batches of two, and the
    # fourth client already holding a code of the pool from an earlier message
    world = make_world(6, channels=(Channel.SMS,))
    world.campaign.channels = ["sms"]
    world.campaign.save()
    pool = PromoPoolFactory()
    promo_pool_generate(pool=pool, count=20)
    world.offer.promo_pool = pool
    world.offer.save()
    holder = sorted(world.clients, key=lambda c: c.pk)[3]
    code = promo_code_assign_many(pool=pool, client_ids=[holder.pk], offer=world.offer)[holder.pk]
    run = CampaignRun.objects.create(campaign=world.campaign, started_at=NOW)
    # ... and a till that redeems the holder's code once their batch has been proposed ahead
    real = campaigns._CandidateBuilder._proposed_ahead
    ahead: list[bool] = []
    proposed_to_holder: list[bool] = []

    def proposed_ahead(self: campaigns._CandidateBuilder, ids: list[int]) -> Any:
        found = real(self, ids)
        ahead.append(found is not None)
        if found is not None and holder.pk in ids:
            proposed_to_holder.append(any(p.client_id == holder.pk for p in found))
            (redeemed,) = run_together(lambda: promo_code_redeem(code=code, client_id=holder.pk))
            assert not isinstance(redeemed, Exception), redeemed
        return found

    monkeypatch.setattr(campaigns._CandidateBuilder, "_proposed_ahead", proposed_ahead)

    # When the run is planned
    run = campaign_run_plan(run=run.pk, now=NOW, batch_size=2)

    # Then every batch was proposed ahead, the holder's too, with the offer still for them ...
    assert ahead == [True, True, True]
    assert proposed_to_holder == [True]
    # ... yet the holder gets no message, and the others one each with a code of their own
    assert (run.status, run.planned, run.excluded) == (RunStatus.PLANNED, 5, {"no_promo_code": 1})
    assert not Message.objects.filter(client=holder).exists()
    messages = list(Message.objects.filter(run=run))
    assert {m.status for m in messages} == {MessageStatus.PLANNED}
    holders = dict(PromoCode.objects.filter(client__isnull=False).values_list("code", "client_id"))
    assert len({m.promo_code for m in messages}) == 5
    for message in messages:
        assert message.promo_code != code and message.promo_code in message.text
        assert holders[message.promo_code] == message.client_id
    assert not Message.objects.filter(text__contains=code).exists()
