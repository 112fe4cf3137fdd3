"""Prints messages to stdout (development, ``make run``)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from messaging.backends.base import BaseBackend, OutgoingMessage, SendResult, SendStatus

_lock = threading.Lock()


class ConsoleBackend(BaseBackend):
    def __init__(self, *, stream: TextIO | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.stream = stream or sys.stdout

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        with _lock:
            for message in messages:
                head = f"[{self.channel}] #{message.id} → {message.to}"
                if message.subject:
                    head += f" «{message.subject}»"
                self.stream.write(f"{head}\n{message.text}\n{'-' * 60}\n")
            self.stream.flush()
        return [SendResult(m.id, SendStatus.SENT, provider_id=f"console-{m.id}") for m in messages]
