"""What a voice (autodial) backend adds to the base interface: click-to-call and its provider name.

``send_messages`` starts autodial calls (``SENT`` means dialing started or was queued for the
dialer); the outcome comes back later as :class:`messaging.events.CallEvent` through webhooks or
the autodialer. ``originate`` asks a PBX to ring an operator's extension and then connect the
client (the card's click-to-call); a plain SIP trunk cannot do that.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.utils.translation import gettext_lazy as _

from messaging.backends.base import BaseBackend, PermanentGatewayError


class NotSupported(PermanentGatewayError):
    """The backend cannot do this (e.g. click-to-call over a bare SIP trunk)."""


class VoiceBackend(BaseBackend):
    provider: ClassVar[str] = ""
    # True when calls are placed by the ``autodialer`` process rather than by a remote PBX.
    uses_dialer: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def originate(self, *, extension: str, number: str, reference: str = "") -> str:
        """Ring ``extension`` first, then connect it to ``number``; return the request's id."""
        raise NotSupported(
            str(_("%(backend)s cannot place click-to-call calls."))
            % {"backend": type(self).__name__}
        )


def phone_digits(number: str) -> str:
    """+79161234567 -> 79161234567: what SIP URIs and PBX APIs expect."""
    return "".join(ch for ch in str(number) if ch.isdigit())
