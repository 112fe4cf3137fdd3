"""SMS part counting: GSM-7 (160/153, extension characters count twice) and UCS-2 (70/67)."""

from __future__ import annotations

import pytest

from offers.sms import GSM7_ALL, fit_sms, is_gsm7, sms_info, transliterate


@pytest.mark.parametrize(
    ("text", "encoding", "units", "parts"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
        ("a" * 159 + "€", "GSM-7", 161, 2),
        ("[]{}" + "a" * 152, "GSM-7", 160, 1),
        ("я" * 70, "UCS-2", 70, 1),
        ("я" * 71, "UCS-2", 71, 2),
        ("я" * 134, "UCS-2", 134, 2),
        ("я" * 135, "UCS-2", 135, 3),
        ("a" * 69 + "я", "UCS-2", 70, 1),  # one Cyrillic letter makes the whole text UCS-2
        ("€" * 69 + "я", "UCS-2", 70, 1),  # in UCS-2 the euro sign is one unit
        ("😀" * 35, "UCS-2", 70, 1),  # surrogate pairs: two units each
        ("😀" * 36, "UCS-2", 72, 2),
    ],
)
def test_sms_info(text, encoding, units, parts):
    info = sms_info(text)
    assert (info.encoding, info.units, info.parts) == (encoding, units, parts)
    assert info.characters == len(text)


def test_an_extension_character_never_straddles_two_parts():
    # 152 plain septets then "€" (2): the second part starts with it, 154 > 153 in part one
    assert sms_info("a" * 152 + "€" + "a" * 10).parts == 2
    # 153 septets filled exactly by parts: 152 + escape split would need part 3 otherwise
    text = "a" * 152 + "€" + "a" * 152
    assert sms_info(text).units == 306
    assert sms_info(text).parts == 3


def test_a_surrogate_pair_never_straddles_two_parts():
    assert sms_info("я" * 66 + "😀" + "я" * 67).parts == 3
    assert sms_info("я" * 65 + "😀" + "я" * 67).parts == 2


def test_transliteration_fits_a_russian_text_into_one_part():
    text = "Анна, скидка 10% на корм Whiskas до 01.03 — покажите код LX-ABCD1234 на кассе «Лично»!"
    info = sms_info(text)
    assert (info.encoding, info.parts) == ("UCS-2", 2)

    sent, fitted = fit_sms(text, transliterate_if_needed=True)

    assert sent == (
        'Anna, skidka 10% na korm Whiskas do 01.03 - pokazhite kod LX-ABCD1234 na kasse "Lichno"!'
    )
    assert (fitted.encoding, fitted.parts) == ("GSM-7", 1)
    assert fit_sms(text, transliterate_if_needed=False)[0] == text


def test_transliterate_keeps_case_and_gsm_characters():
    assert transliterate("Щука Ёж №5 ₽") == "Shchuka Ezh N5 rub."
    assert fit_sms("Привет", transliterate_if_needed=True)[0] == "Привет"  # one part already


def test_gsm7_test_is_membership_in_the_alphabet_for_every_character():
    # Every GSM-7 character (with the regular-expression specials among them), one at a time
    # and all together, is GSM-7; one character outside the alphabet anywhere makes it UCS-2.
    alphabet = "".join(sorted(GSM7_ALL))
    assert is_gsm7(alphabet)
    assert all(is_gsm7(ch) for ch in alphabet)
    for outsider in ("я", "`", "\t", "\u00a0", "😀", "ё", "\x00"):
        assert not is_gsm7(outsider)
        assert not is_gsm7(alphabet + outsider)
        assert not is_gsm7(outsider + alphabet)
    assert is_gsm7("")
