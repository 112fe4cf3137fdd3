"""The Russian catalogs are complete and compiled: no entry left empty or fuzzy, and every .mo
says what its .po says (a .po edited without compilemessages would show English in the UI)."""

from __future__ import annotations

import ast
import gettext
from pathlib import Path
from typing import cast

import pytest
from django.conf import settings

CATALOGS = sorted(Path(settings.BASE_DIR).glob("**/locale/ru/LC_MESSAGES/django.po"))
CATALOGS = [p for p in CATALOGS if ".venv" not in p.parts]


def entries(po: Path) -> list[dict[str, object]]:
    """The entries of a .po file: flags, msgctxt, msgid, msgid_plural and msgstr(s)."""
    out: list[dict[str, object]] = []
    entry: dict[str, object] = {"flags": "", "msgstr": {}}
    key: tuple[str, int | None] | None = None
    for line in po.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if "msgid" in entry:
                out.append(entry)
            entry, key = {"flags": "", "msgstr": {}}, None
        elif line.startswith("#,"):
            entry["flags"] = line
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            assert key is not None
            text = ast.literal_eval(line)
            if key[0] == "msgstr":
                strs: dict[int, str] = entry["msgstr"]  # type: ignore[assignment]
                strs[key[1] or 0] += text
            else:
                entry[key[0]] = str(entry[key[0]]) + text
        else:
            word, _, value = line.partition(" ")
            text = ast.literal_eval(value)
            if word.startswith("msgstr"):
                index = int(word[7:-1]) if "[" in word else None
                key = ("msgstr", index)
                strs = entry["msgstr"]  # type: ignore[assignment]
                strs[index or 0] = text
            else:
                key = (word, None)
                entry[word] = text
    return [e for e in out if e.get("msgid")]


@pytest.mark.parametrize("po", CATALOGS, ids=lambda p: str(p.parent.parent.parent.parent.name))
def test_every_entry_is_translated_and_compiled(po: Path) -> None:
    found = entries(po)
    assert found, po
    unfinished = [
        e["msgid"]
        for e in found
        if "fuzzy" in str(e["flags"]) or not all(cast("dict[int, str]", e["msgstr"]).values())
    ]
    assert unfinished == []
    with po.with_suffix(".mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for e in found:
        msgid = str(e["msgid"])
        context = e.get("msgctxt")
        strs: dict[int, str] = e["msgstr"]  # type: ignore[assignment]
        if "msgid_plural" in e:
            got = compiled.ngettext(msgid, str(e["msgid_plural"]), 1)
        elif context is not None:
            got = compiled.pgettext(str(context), msgid)
        else:
            got = compiled.gettext(msgid)
        if got != strs[0]:
            stale.append(msgid)
    assert stale == []
