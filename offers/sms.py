"""SMS length: encoding (GSM-7 or UCS-2), characters, parts; transliteration to fit one part.

GSM-7 (3GPP TS 23.038) carries 160 septets in one message, 153 per part of a concatenated one;
characters of the extension table (``^{}\\[~]|€`` and form feed) take two septets and are never
split across parts. Anything outside GSM-7 (Cyrillic, emoji) sends the whole message as UCS-2:
70 UTF-16 code units in one message, 67 per part; a surrogate pair is never split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crm.translit import RUSSIAN_TO_LATIN

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True)
class SmsInfo:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int  # characters as the reader sees them
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: int
    per_part: int  # capacity of one part for this text: 160/153 or 70/67

    @property
    def is_single(self) -> bool:
        return self.parts <= 1


GSM7_ALL = GSM7_BASIC | GSM7_EXTENDED
# Characters beyond the Basic Multilingual Plane: two UTF-16 code units (a surrogate pair) each.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


# A character outside GSM-7: one regular-expression search stops at the first one, where
# ``GSM7_ALL.issuperset(text)`` would first build a set of the whole text.
_NOT_GSM7 = re.compile("[^" + "".join(re.escape(ch) for ch in sorted(GSM7_ALL)) + "]")


def is_gsm7(text: str) -> bool:
    return _NOT_GSM7.search(text) is None


def _split_count(sizes: list[int], single: int, part: int) -> int:
    total = sum(sizes)
    if total == 0:
        return 0
    if total <= single:
        return 1
    parts, used = 1, 0
    for size in sizes:  # greedy: a two-unit character never straddles two parts
        if used + size > part:
            parts += 1
            used = 0
        used += size
    return parts


def _split_even(total: int, single: int, part: int) -> int:
    """``_split_count`` when every character takes one unit."""
    if total == 0:
        return 0
    return 1 if total <= single else -(-total // part)


def sms_info(text: str) -> SmsInfo:
    """Encoding, length and number of parts of an SMS text."""
    if is_gsm7(text):
        if GSM7_EXTENDED.isdisjoint(text):  # one septet each: no need to walk the text
            parts = _split_even(len(text), GSM7_SINGLE, GSM7_PART)
            per_part = GSM7_SINGLE if parts <= 1 else GSM7_PART
            return SmsInfo("GSM-7", len(text), len(text), parts, per_part)
        sizes = [2 if ch in GSM7_EXTENDED else 1 for ch in text]
        parts = _split_count(sizes, GSM7_SINGLE, GSM7_PART)
        per_part = GSM7_SINGLE if parts <= 1 else GSM7_PART
        return SmsInfo("GSM-7", len(text), sum(sizes), parts, per_part)
    if _ASTRAL.search(text) is None:  # no surrogate pairs: one code unit each (max() is 10x slower)
        parts = _split_even(len(text), UCS2_SINGLE, UCS2_PART)
        per_part = UCS2_SINGLE if parts <= 1 else UCS2_PART
        return SmsInfo("UCS-2", len(text), len(text), parts, per_part)
    sizes = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    parts = _split_count(sizes, UCS2_SINGLE, UCS2_PART)
    per_part = UCS2_SINGLE if parts <= 1 else UCS2_PART
    return SmsInfo("UCS-2", len(text), sum(sizes), parts, per_part)


_PUNCTUATION = {
    "«": '"',
    "»": '"',
    "„": '"',
    "“": '"',
    "”": '"',
    "‘": "'",
    "’": "'",
    "—": "-",
    "–": "-",
    "−": "-",
    "…": "...",
    "№": "N",
    "₽": "rub.",
    "\u00a0": " ",
    "\u202f": " ",
    "•": "*",
}


def _transliterate_char(ch: str) -> str:
    lower = ch.lower()
    if lower in RUSSIAN_TO_LATIN:
        latin = RUSSIAN_TO_LATIN[lower]
        if ch != lower and latin:
            latin = latin[0].upper() + latin[1:]
        return latin
    if ch in _PUNCTUATION:
        return _PUNCTUATION[ch]
    if ch in GSM7_BASIC or ch in GSM7_EXTENDED:
        return ch
    return ""


class _TransliterationTable(dict[int, str]):
    """``str.translate`` table filled on first sight of each character (up to a bound)."""

    def __missing__(self, code: int) -> str:
        value = _transliterate_char(chr(code))
        if len(self) < 4096:
            self[code] = value
        return value


_TABLE = _TransliterationTable()


def transliterate(text: str) -> str:
    """Latin spelling of Russian text, GSM-7 punctuation; other non-GSM characters dropped."""
    return text.translate(_TABLE)


def fit_sms(text: str, *, transliterate_if_needed: bool) -> tuple[str, SmsInfo]:
    """The text to send and its figures: transliterated when that makes it one part instead of
    several (and only when asked)."""
    info = sms_info(text)
    if transliterate_if_needed and info.encoding == "UCS-2" and info.parts > 1:
        latin = transliterate(text)
        latin_info = sms_info(latin)
        if latin_info.parts < info.parts:
            return latin, latin_info
    return text, info
