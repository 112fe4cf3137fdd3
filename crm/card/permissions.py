"""Permissions of the operator's card (created by migration ``crm.0009_card_permissions``)."""

from __future__ import annotations

VIEW_CARD = "crm.view_client_card"
RECORD_OUTCOME = "crm.record_call_outcome"
TAKE_CALLBACK = "crm.take_callback"
SEND_OFFER = "crm.send_offer_now"
CLICK_TO_CALL = "crm.click_to_call"
# Spoken consent is a consent event like any other.
RECORD_CONSENT = "crm.add_consentevent"

OPERATOR_PERMISSIONS = [VIEW_CARD, RECORD_OUTCOME, TAKE_CALLBACK, SEND_OFFER, CLICK_TO_CALL]
