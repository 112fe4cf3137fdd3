"""GSM-7 / UCS-2 encoding and concatenation (UDH) of SMS texts."""

from __future__ import annotations

from messaging.backends.smsparts import (
    DATA_CODING_GSM7,
    DATA_CODING_UCS2,
    ESM_CLASS_UDHI,
    is_gsm7,
    sms_decode,
    sms_part_count,
    sms_split,
)


def _join(parts: list[bytes]) -> bytes:
    return b"".join(p[6:] for p in parts)


def test_latin_text_is_gsm7_single_up_to_160() -> None:
    text = "a" * 160
    split = sms_split(text)
    assert (split.data_coding, split.esm_class, split.parts) == (DATA_CODING_GSM7, 0, [b"a" * 160])


def test_long_gsm7_text_is_split_into_153_septet_parts_with_udh() -> None:
    split = sms_split("b" * 161, reference=42)
    assert split.esm_class == ESM_CLASS_UDHI
    assert [len(p) for p in split.parts] == [6 + 153, 6 + 8]
    assert split.parts[0][:6] == bytes([5, 0, 3, 42, 2, 1])
    assert split.parts[1][:6] == bytes([5, 0, 3, 42, 2, 2])


def test_extension_characters_count_double_and_are_never_cut() -> None:
    text = "x" * 152 + "€" + "y" * 10  # the euro sign would straddle septets 153/154
    split = sms_split(text)
    assert len(split.parts) == 2
    assert split.parts[0][6:] == b"x" * 152  # the escape moved whole to part two
    assert split.parts[1][6:8] == bytes([0x1B, 0x65])
    assert sms_decode(_join(split.parts), DATA_CODING_GSM7) == text


def test_cyrillic_is_ucs2_70_then_67_per_part() -> None:
    assert sms_split("ж" * 70).parts == ["ж".encode("utf-16-be") * 70]
    split = sms_split("ж" * 71)
    assert split.data_coding == DATA_CODING_UCS2
    assert [len(p) for p in split.parts] == [6 + 134, 6 + 8]
    assert _join(split.parts).decode("utf-16-be") == "ж" * 71


def test_surrogate_pairs_are_never_cut() -> None:
    text = "ж" * 66 + "😀" + "ж" * 10  # the emoji would straddle code units 67/68
    split = sms_split(text)
    assert split.parts[0][6:].decode("utf-16-be") == "ж" * 66
    assert _join(split.parts).decode("utf-16-be") == text


def test_part_count_and_detection() -> None:
    assert is_gsm7("Hello {world} €5") and not is_gsm7("Привет")
    assert sms_part_count("Привет, " * 20) == 3
    assert sms_part_count("") == 1


def test_decode_strips_udh() -> None:
    split = sms_split("ж" * 80, reference=1)
    assert sms_decode(split.parts[1], DATA_CODING_UCS2, has_udh=True) == "ж" * 13
