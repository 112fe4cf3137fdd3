"""`make run` starts the gateway processes the configured backends need, and only those."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command


def processes() -> list[str]:
    out = io.StringIO()
    call_command("gateway_processes", stdout=out)
    return out.getvalue().split()


@pytest.mark.parametrize(
    ("sms", "voice", "expected"),
    [
        ("console.ConsoleBackend", "console.ConsoleBackend", []),
        ("kannel.KannelBackend", "zadarma.ZadarmaBackend", []),
        ("smpp.SmppBackend", "sip.SipBackend", ["autodialer", "smpp_listener"]),
        ("kannel.KannelBackend", "sip.SipBackend", ["autodialer"]),
    ],
)
def test_the_configured_backends_say_which_processes_run(
    settings: Any, sms: str, voice: str, expected: list[str]
) -> None:
    settings.SMS_BACKEND = f"messaging.backends.{sms}"
    settings.VOICE_BACKEND = f"messaging.backends.{voice}"

    assert processes() == expected
