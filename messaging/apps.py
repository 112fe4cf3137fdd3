from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = _("Messaging")

    def ready(self) -> None:
        from crm.services import CONSENT_WITHDRAWAL_HANDLERS
        from messaging.services.outbox import messages_cancel_for_consent_events

        # A withdrawn consent cancels what is queued on it, in the same transaction.
        if messages_cancel_for_consent_events not in CONSENT_WITHDRAWAL_HANDLERS:
            CONSENT_WITHDRAWAL_HANDLERS.append(messages_cancel_for_consent_events)
