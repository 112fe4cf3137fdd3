"""The autodialer's shutdown, step by step (the real-process test is in test_sip_peers.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from messaging.backends.baresip import Baresip
from messaging.backends.sip import SipBackend
from messaging.management.commands import autodialer


@pytest.fixture
def restored_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_the_first_signal_exits_and_later_ones_wait_for_the_clean_up(
    restored_handlers: None,
) -> None:
    with pytest.raises(SystemExit) as exited:
        autodialer._stop(signal.SIGINT, None)

    assert exited.value.code == 128 + signal.SIGINT
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_a_dialer_interrupted_while_starting_stops_the_lines_it_started(tmp_path: Path) -> None:
    backend = SipBackend(
        channel="call", lines=3, work_dir=str(tmp_path), prompt_dir=str(tmp_path / "prompts")
    )
    started: list[Baresip] = []
    stopped: list[Baresip] = []

    def start(agent: Baresip, **_: Any) -> None:
        if len(started) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the third line starts
        started.append(agent)

    with (
        mock.patch.object(Baresip, "start", start),
        mock.patch.object(Baresip, "stop", lambda agent: stopped.append(agent)),
        mock.patch("messaging.backends.sip.silence", return_value=tmp_path / "silence.wav"),
        pytest.raises(KeyboardInterrupt),
        backend.dialer(),
    ):
        pass

    # Every agent that was started is stopped, and the one being started too.
    assert set(map(id, started)) <= set(map(id, stopped))
    assert len(stopped) == 3
