"""The backend interface every gateway implements."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar


class SendStatus(enum.StrEnum):
    SENT = "sent"  # the gateway accepted it (or, for calls, started dialing)
    FAILED = "failed"  # permanent: invalid number, rejected content; never retried
    RETRY = "retry"  # transient: connection lost, throttled; retried with backoff


class GatewayError(Exception):
    """A whole batch failed to reach the gateway."""


class RetryableGatewayError(GatewayError):
    """Connection lost, timeout, throttled (SMPP 0x58): try again later."""


class PermanentGatewayError(GatewayError):
    """Misconfiguration or refusal that a retry will not fix."""


@dataclass(frozen=True)
class OutgoingMessage:
    id: int  # our Message id: gateways that echo a reference (DLR URL, callback) carry it
    idempotency_key: str
    channel: str
    to: str  # E.164 phone number or e-mail address
    text: str
    subject: str = ""
    html: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    message_id: int
    status: SendStatus
    provider_id: str = ""
    error: str = ""
    retry_after: float | None = None  # seconds, for RETRY


class BaseBackend:
    """Sends messages of one channel. Subclasses implement :meth:`send_messages`.

    ``rate_limit`` (messages per second, ``None`` for unlimited) is honoured by dispatch across
    all workers. ``idempotent`` says that sending the same ``idempotency_key`` twice delivers once,
    so a message whose outcome a crash left unknown may be retried; ``lookup`` lets dispatch ask the
    gateway which of such messages it already accepted. A backend that can do neither gets its
    unknown-outcome messages marked failed rather than risking a second send.
    """

    idempotent: ClassVar[bool] = False

    def __init__(self, *, channel: str, rate_limit: float | None = None, **options: Any) -> None:
        self.channel = channel
        self.rate_limit = rate_limit
        self.options = options

    def open(self) -> None:
        """Connect (bind, log in) before a batch; a no-op for stateless gateways."""

    def close(self) -> None:
        """Disconnect gracefully after a batch."""

    def __enter__(self) -> BaseBackend:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        raise NotImplementedError

    def after_send(self) -> None:
        """Called by dispatch once a batch's outcomes are committed: store and apply what the
        gateway reported meanwhile (delivery receipts), now that their Messages are marked sent,
        outside the send transaction. A no-op for gateways that report nothing."""

    def lookup(self, keys: Sequence[str]) -> dict[str, str] | None:
        """Keys the gateway accepted, with provider ids; ``None`` when it cannot tell."""
        return None
