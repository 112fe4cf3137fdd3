"""In-memory backend for tests: ``messaging.backends.locmem.outbox`` lists what was sent."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from messaging.backends.base import BaseBackend, OutgoingMessage, SendResult, SendStatus

outbox: list[OutgoingMessage] = []
_accepted: dict[str, str] = {}
_ids = itertools.count(1)
# Recipients a test wants refused permanently, or transiently (once each).
fail_permanently: set[str] = set()
fail_transiently: set[str] = set()


def reset() -> None:
    outbox.clear()
    _accepted.clear()
    fail_permanently.clear()
    fail_transiently.clear()


class LocmemBackend(BaseBackend):
    idempotent = True

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        results = []
        for message in messages:
            if message.to in fail_permanently:
                results.append(SendResult(message.id, SendStatus.FAILED, error="invalid number"))
                continue
            if message.to in fail_transiently:
                fail_transiently.discard(message.to)
                results.append(SendResult(message.id, SendStatus.RETRY, error="throttled"))
                continue
            provider_id = _accepted.get(message.idempotency_key)
            if provider_id is None:
                provider_id = f"locmem-{next(_ids)}"
                _accepted[message.idempotency_key] = provider_id
                outbox.append(message)
            results.append(SendResult(message.id, SendStatus.SENT, provider_id=provider_id))
        return results

    def lookup(self, keys: Sequence[str]) -> dict[str, str] | None:
        return {key: _accepted[key] for key in keys if key in _accepted}
