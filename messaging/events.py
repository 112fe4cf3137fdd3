"""Normalized gateway events: what every backend and webhook turns its provider's format into.

Each event knows the unique key it is stored under in ``messaging.GatewayEvent`` (provider, kind,
provider's id, sequence/state), so a replayed webhook or a receipt read twice is stored once, and
the sequence orders the events of one id when they arrive out of order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from messaging.models import CallDirection, CallState, EventKind


class DeliveryState(enum.StrEnum):
    """Where a gateway says a message is; ``rank`` orders them so status only moves forward."""

    ACCEPTED = "accepted"  # the SMSC took it (Kannel 8, SMPP ENROUTE/ACCEPTD)
    BUFFERED = "buffered"  # queued at the SMSC, not yet on the handset (Kannel 4)
    DELIVERED = "delivered"  # on the handset (Kannel 1, SMPP DELIVRD)
    UNDELIVERED = "undelivered"  # gave up: expired, unreachable (Kannel 2, SMPP UNDELIV/EXPIRED)
    REJECTED = "rejected"  # refused: invalid number, barred (Kannel 16, SMPP REJECTD)

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def is_final(self) -> bool:
        return self.rank >= _RANK[DeliveryState.DELIVERED]


_RANK = {
    DeliveryState.ACCEPTED: 0,
    DeliveryState.BUFFERED: 1,
    # A multi-part message whose first part arrived and whose second did not is not delivered:
    # a failure outranks a success, never the other way round.
    DeliveryState.DELIVERED: 2,
    DeliveryState.UNDELIVERED: 3,
    DeliveryState.REJECTED: 3,
}

# Kannel's DLR type (%d) -> state.
KANNEL_DLR_STATES = {
    1: DeliveryState.DELIVERED,
    2: DeliveryState.UNDELIVERED,
    4: DeliveryState.BUFFERED,
    8: DeliveryState.ACCEPTED,
    16: DeliveryState.REJECTED,
}

# SMPP receipt "stat:" word (and message_state TLV value) -> state.
SMPP_STAT_STATES = {
    "ENROUTE": DeliveryState.ACCEPTED,
    "ACCEPTD": DeliveryState.ACCEPTED,
    "UNKNOWN": DeliveryState.ACCEPTED,
    "DELIVRD": DeliveryState.DELIVERED,
    "EXPIRED": DeliveryState.UNDELIVERED,
    "DELETED": DeliveryState.UNDELIVERED,
    "UNDELIV": DeliveryState.UNDELIVERED,
    "REJECTD": DeliveryState.REJECTED,
}
SMPP_MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}


@dataclass(frozen=True)
class DeliveryReport:
    """A gateway's word on one sent SMS (or one part of it).

    ``message_id`` is our Message id when the gateway echoes it (Kannel's dlr-url); otherwise the
    report is matched to the Message whose ``provider_id`` equals ``external_id``.
    """

    provider: str
    external_id: str
    state: DeliveryState
    occurred_at: datetime
    sequence: str = ""
    message_id: int | None = None
    error: str = ""
    payload: dict[str, Any] = field(default_factory=dict)

    kind = EventKind.DELIVERY_REPORT

    @property
    def key_sequence(self) -> str:
        return self.sequence or self.state.value


@dataclass(frozen=True)
class InboundSms:
    """A text a client sent us (MO)."""

    provider: str
    external_id: str  # the provider's id of the inbound message; replays share it
    sender: str
    recipient: str
    text: str
    occurred_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)

    kind = EventKind.INBOUND_SMS

    @property
    def key_sequence(self) -> str:
        return "mo"


@dataclass(frozen=True)
class CallEvent:
    """One step of a call (ringing, answered, a digit pressed, ended), from a PBX or our dialer."""

    provider: str
    call_id: str
    state: CallState
    direction: CallDirection
    occurred_at: datetime
    from_number: str = ""
    to_number: str = ""
    extension: str = ""
    disposition: str = ""  # ended: answered, busy, no_answer, failed, cancelled...
    duration: int | None = None  # seconds of conversation, when ended
    digits: str = ""  # dtmf
    sequence: str = ""  # the provider's event order; default: the state (plus digits)
    message_id: int | None = None  # our Message, for autodial calls we started
    payload: dict[str, Any] = field(default_factory=dict)

    kind = EventKind.CALL

    @property
    def external_id(self) -> str:
        return self.call_id

    @property
    def key_sequence(self) -> str:
        if self.sequence:
            return self.sequence
        return f"{self.state}:{self.digits}" if self.digits else str(self.state)


GatewayEventData = DeliveryReport | InboundSms | CallEvent
