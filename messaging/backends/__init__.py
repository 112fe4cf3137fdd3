"""Gateway backends, pluggable like Django's e-mail backends.

``get_backend(channel)`` builds the backend named by ``SMS_BACKEND`` / ``VOICE_BACKEND`` (dotted
paths, options in ``SMS_BACKEND_OPTIONS`` / ``VOICE_BACKEND_OPTIONS``); e-mail goes through
Django's own ``EMAIL_BACKEND`` wrapped by :class:`messaging.backends.email.EmailBackend`. Nothing
outside this package knows a gateway's protocol.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from crm.models import Channel
from messaging.backends.base import BaseBackend, OutgoingMessage, SendResult, SendStatus

__all__ = ["BaseBackend", "OutgoingMessage", "SendResult", "SendStatus", "get_backend"]

_SETTINGS = {
    Channel.SMS: ("SMS_BACKEND", "SMS_BACKEND_OPTIONS"),
    Channel.CALL: ("VOICE_BACKEND", "VOICE_BACKEND_OPTIONS"),
    Channel.EMAIL: ("MESSAGING_EMAIL_BACKEND", "MESSAGING_EMAIL_BACKEND_OPTIONS"),
}


def backend_path(channel: str) -> str:
    return str(getattr(settings, _SETTINGS[Channel(channel)][0]))


def get_backend(channel: str, **overrides: Any) -> BaseBackend:
    path_setting, options_setting = _SETTINGS[Channel(channel)]
    backend_class = import_string(getattr(settings, path_setting))
    options = {**getattr(settings, options_setting, {}), **overrides}
    return backend_class(channel=channel, **options)
