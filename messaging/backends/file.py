"""Appends each message as a JSON line to a file; idempotent by key (crash-recovery tests, demos).

The journal survives the process, so after a worker is killed, dispatch can ask it which
messages were accepted before the crash (``lookup``) and never send one twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from messaging.backends.base import BaseBackend, OutgoingMessage, SendResult, SendStatus


class FileBackend(BaseBackend):
    idempotent = True

    def __init__(self, *, path: str | os.PathLike[str], delay: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        self.path = Path(path)
        # Seconds per message, to imitate a slow gateway (crash and throttle tests, demos).
        self.delay = float(delay)

    def _accepted(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        accepted = {}
        with self.path.open(encoding="utf-8") as journal:
            for line in journal:
                if line.endswith("\n"):  # a torn last line was never acknowledged
                    row = json.loads(line)
                    accepted[row["key"]] = row["provider_id"]
        return accepted

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        results = []
        with self.path.open("a+", encoding="utf-8") as journal:
            fcntl.flock(journal, fcntl.LOCK_EX)  # several workers may share one journal
            accepted = self._accepted()
            for message in messages:
                provider_id = accepted.get(message.idempotency_key)
                if provider_id is None:
                    provider_id = f"file-{message.id}"
                    row = {
                        "key": message.idempotency_key,
                        "provider_id": provider_id,
                        "id": message.id,
                        "channel": message.channel,
                        "to": message.to,
                        "subject": message.subject,
                        "text": message.text,
                    }
                    if self.delay:
                        time.sleep(self.delay)
                    journal.write(json.dumps(row, ensure_ascii=False) + "\n")
                    journal.flush()  # accepted once written: a crash after this keeps it
                    accepted[message.idempotency_key] = provider_id
                results.append(SendResult(message.id, SendStatus.SENT, provider_id=provider_id))
            journal.flush()
            os.fsync(journal.fileno())
        return results

    def lookup(self, keys: Sequence[str]) -> dict[str, str] | None:
        accepted = self._accepted()
        return {key: accepted[key] for key in keys if key in accepted}
