"""E-mail through Django's ``EMAIL_BACKEND`` (SMTP, console, locmem, file): HTML and plain text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils.crypto import salted_hmac

from messaging.backends.base import BaseBackend, OutgoingMessage, SendResult, SendStatus


def _message_id(message: OutgoingMessage) -> str:
    # Stable per idempotency key, so a resend after a crash carries the same Message-ID and
    # receiving servers can tell it is the same letter.
    digest = salted_hmac("lichno.email", message.idempotency_key).hexdigest()[:24]
    domain = getattr(settings, "MESSAGING_EMAIL_DOMAIN", "lichno.local")
    return f"<{message.id}.{digest}@{domain}>"


class EmailBackend(BaseBackend):
    def __init__(self, *, email_backend: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.email_backend = email_backend
        self.connection: Any = None

    def open(self) -> None:
        self.connection = get_connection(self.email_backend, fail_silently=False)
        self.connection.open()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        connection = self.connection or get_connection(self.email_backend, fail_silently=False)
        results = []
        for message in messages:
            provider_id = _message_id(message)
            email = EmailMultiAlternatives(
                subject=message.subject,
                body=message.text,
                from_email=settings.DEFAULT_FROM_EMAIL,
                to=[message.to],
                headers={"Message-ID": provider_id, **message.headers},
                connection=connection,
            )
            if message.html:
                email.attach_alternative(message.html, "text/html")
            try:
                email.send()
            except (ConnectionError, TimeoutError, OSError) as exc:
                results.append(SendResult(message.id, SendStatus.RETRY, error=str(exc)[:500]))
            except Exception as exc:  # noqa: BLE001 - a refused recipient fails only its message
                results.append(SendResult(message.id, SendStatus.FAILED, error=str(exc)[:500]))
            else:
                results.append(SendResult(message.id, SendStatus.SENT, provider_id=provider_id))
        return results
