"""SMS text encoding and splitting: GSM 03.38 (7-bit) when every character fits, else UCS-2.

Long texts become concatenated parts with a User Data Header (8-bit reference). Unlike a naive
byte split, a part never ends between an escape and its character (``€``, ``[``) nor between the
two halves of a UTF-16 surrogate pair (emoji), which would garble the text on the handset.

GSM 7-bit text is given unpacked (one septet per byte), which is what SMPP's ``data_coding`` 0
carries; the SMSC packs it for the air.
"""

from __future__ import annotations

from dataclasses import dataclass

# GSM 03.38 basic table: position = septet value; "\x1b" is the escape to the extension table.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
_GSM_INDEX = {ch: i for i, ch in enumerate(GSM_BASIC) if ch != "\x1b"}

DATA_CODING_GSM7 = 0x00
DATA_CODING_UCS2 = 0x08
ESM_CLASS_UDHI = 0x40

GSM7_SINGLE, GSM7_PART = 160, 153  # septets
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units
MAX_PARTS = 255


class MessageTooLong(ValueError):
    pass


@dataclass(frozen=True)
class SmsParts:
    data_coding: int
    esm_class: int
    parts: list[bytes]  # each with its UDH when there are several

    @property
    def is_unicode(self) -> bool:
        return self.data_coding == DATA_CODING_UCS2


def is_gsm7(text: str) -> bool:
    return all(ch in _GSM_INDEX or ch in GSM_EXTENSION for ch in text)


def _gsm7_units(text: str) -> list[bytes]:
    """One item per character: 1 septet, or 2 for an extension character (escape + code)."""
    return [
        bytes([_GSM_INDEX[ch]]) if ch in _GSM_INDEX else bytes([0x1B, GSM_EXTENSION[ch]])
        for ch in text
    ]


def _ucs2_units(text: str) -> list[bytes]:
    """One item per character: 2 bytes, or 4 for a surrogate pair (kept together)."""
    return [ch.encode("utf-16-be") for ch in text]


def _pack(units: list[bytes], limit: int, unit_size: int) -> list[bytes]:
    """Greedy split of whole characters into chunks of at most ``limit`` code units."""
    chunks: list[bytes] = []
    current = bytearray()
    for unit in units:
        if len(current) + len(unit) > limit * unit_size:
            chunks.append(bytes(current))
            current = bytearray()
        current += unit
    if current or not chunks:
        chunks.append(bytes(current))
    return chunks


def sms_split(text: str, *, reference: int = 0) -> SmsParts:
    """Encode ``text`` and split it into parts; ``reference`` (0-255) ties the parts together."""
    if is_gsm7(text):
        coding, units, single, part, size = (
            DATA_CODING_GSM7,
            _gsm7_units(text),
            GSM7_SINGLE,
            GSM7_PART,
            1,
        )
    else:
        coding, units, single, part, size = (
            DATA_CODING_UCS2,
            _ucs2_units(text),
            UCS2_SINGLE,
            UCS2_PART,
            2,
        )
    if sum(len(u) for u in units) <= single * size:
        return SmsParts(coding, 0, [b"".join(units)])
    chunks = _pack(units, part, size)
    if len(chunks) > MAX_PARTS:
        raise MessageTooLong(f"{len(chunks)} parts")
    ref = reference & 0xFF
    return SmsParts(
        coding,
        ESM_CLASS_UDHI,
        [
            bytes([0x05, 0x00, 0x03, ref, len(chunks), i]) + chunk
            for i, chunk in enumerate(chunks, start=1)
        ],
    )


def sms_part_count(text: str) -> int:
    return len(sms_split(text).parts)


def sms_decode(data: bytes, data_coding: int, *, has_udh: bool = False) -> str:
    """Text of a received short message (MO), UDH stripped."""
    if has_udh and data:
        data = data[data[0] + 1 :]
    if data_coding == DATA_CODING_UCS2:
        return data.decode("utf-16-be", errors="replace")
    if data_coding in (0x03, 0x04):  # Latin-1, 8-bit binary: read as Latin-1
        return data.decode("latin-1")
    out: list[str] = []
    escape = False
    for byte in data:
        if escape:
            out.append(next((ch for ch, code in GSM_EXTENSION.items() if code == byte), " "))
            escape = False
        elif byte == 0x1B:
            escape = True
        elif byte < len(GSM_BASIC):
            out.append(GSM_BASIC[byte])
    return "".join(out)
