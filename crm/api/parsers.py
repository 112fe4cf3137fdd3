"""The bulk endpoints' JSON parser: reads the body stream itself, up to ``API_MAX_BODY_BYTES``.

DRF's ``JSONParser`` goes through ``request.body``, which Django caps at
``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB, a fine limit for forms but not for 10,000 objects).
Numbers with a fraction are read as ``Decimal`` so that prices stay exact; NaN and Infinity are
refused.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from crm.api.exceptions import PayloadTooLarge


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


class BulkJSONParser(BaseParser):
    media_type = "application/json"

    def parse(
        self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(_("The body is larger than %(n)d bytes.") % {"n": limit})
        try:
            return json.loads(
                raw.decode("utf-8"), parse_float=Decimal, parse_constant=_no_constants
            )
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise ParseError(_("JSON parse error: %(e)s") % {"e": error}) from None
