"""The PostgreSQL indexes the compiled segment queries rely on exist after migrating."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_active_clients_have_a_partial_id_index(postgres: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'crm_client' AND indexname = %s",
            ["seg_client_active_id_idx"],
        )
        rows = cursor.fetchall()
    assert rows == [
        (
            "CREATE INDEX seg_client_active_id_idx ON public.crm_client USING btree (id) "
            "WHERE (NOT is_anonymized)",
        )
    ]


def test_loyalty_accounts_have_a_client_index_covering_the_tier(postgres: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'loyalty_loyaltyaccount' "
            "AND indexname = %s",
            ["seg_account_client_tier_idx"],
        )
        rows = cursor.fetchall()
    assert rows == [
        (
            "CREATE INDEX seg_account_client_tier_idx ON public.loyalty_loyaltyaccount "
            "USING btree (client_id) INCLUDE (tier_id)",
        )
    ]
