"""An in-memory PBX for click-to-call tests: ``originated`` lists the calls asked for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from messaging.backends.base import OutgoingMessage, SendResult
from messaging.backends.voice import VoiceBackend

originated: list[dict[str, str]] = []


class RecordingPbx(VoiceBackend):
    provider = "test-pbx"

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        raise NotImplementedError  # the card never autodials

    def originate(self, *, extension: str, number: str, reference: str = "") -> str:
        originated.append({"extension": extension, "number": number, "reference": reference})
        return f"pbx-{len(originated)}"


def reset(**_: Any) -> None:
    originated.clear()
