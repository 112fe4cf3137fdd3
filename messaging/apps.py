from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = _("Messaging")

    def ready(self) -> None:
        from crm.services import CONSENT_WITHDRAWAL_HANDLERS
        from messaging.services.outbox import (
            messages_cancel_for_consent_events,
            messages_cancel_for_redeemed_codes,
        )
        from offers.services import PROMO_REDEMPTION_HANDLERS

        # A withdrawn consent cancels what is queued on it, in the same transaction.
        if messages_cancel_for_consent_events not in CONSENT_WITHDRAWAL_HANDLERS:
            CONSENT_WITHDRAWAL_HANDLERS.append(messages_cancel_for_consent_events)
        # So does a promo code used meanwhile: the client has taken the offer.
        if messages_cancel_for_redeemed_codes not in PROMO_REDEMPTION_HANDLERS:
            PROMO_REDEMPTION_HANDLERS.append(messages_cancel_for_redeemed_codes)
