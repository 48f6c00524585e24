"""Every string of the console is translated in both languages, and the committed catalogues are compiled.

The strings are extracted from the console's Python and templates exactly as
``scripts/console-translations.sh`` extracts them; a string missing from a catalogue, or present with
an empty translation, fails here, as does a ``messages.mo`` that is not its ``messages.po`` compiled.
(The vendored scripts are checked in ``test_console_assets.py``.)
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from sandbox.console import i18n

CONSOLE = Path(i18n.__file__).resolve().parent
LOCALES = sorted(i18n.LOCALES.values())
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2.ext:babel_extract")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None}


def extracted() -> set[str]:
    """Every message id the console uses."""
    found = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(str(CONSOLE), METHODS, keywords=KEYWORDS):
        found.add(message if isinstance(message, str) else message[0])
    return found


def catalogue(locale: str) -> Catalog:
    with open(CONSOLE / "translations" / locale / "LC_MESSAGES" / "messages.po", "rb") as handle:
        return read_po(handle, locale=locale)


def test_the_extraction_finds_the_strings() -> None:
    strings = extracted()
    assert "Sign in" in strings  # a template
    assert "The login or the password is wrong." in strings  # Python, gettext
    assert "held for review" in strings  # Python, lazy_gettext
    assert len(strings) > 100


def test_the_languages_have_a_catalogue_each() -> None:
    assert sorted(p.name for p in (CONSOLE / "translations").iterdir() if p.is_dir()) == LOCALES


@pytest.mark.parametrize("locale", LOCALES)
def test_every_string_is_translated(locale: str) -> None:
    messages = {message.id: message for message in catalogue(locale) if message.id}
    missing = sorted(extracted() - set(messages))
    empty = sorted(str(key) for key, message in messages.items() if not message.string or message.fuzzy)
    assert not missing, f"{locale}: not in the catalogue (run scripts/console-translations.sh): {missing}"
    assert not empty, f"{locale}: empty or fuzzy translations: {empty}"


@pytest.mark.parametrize("locale", LOCALES)
def test_placeholders_survive_translation(locale: str) -> None:
    placeholder = re.compile(r"%\(\w+\)[sd]")
    for message in catalogue(locale):
        if message.id:
            assert sorted(placeholder.findall(str(message.id))) == sorted(placeholder.findall(str(message.string))), message.id


@pytest.mark.parametrize("locale", LOCALES)
def test_the_committed_mo_is_the_po_compiled(locale: str) -> None:
    compiled = io.BytesIO()
    write_mo(compiled, catalogue(locale))
    committed = (CONSOLE / "translations" / locale / "LC_MESSAGES" / "messages.mo").read_bytes()
    assert compiled.getvalue() == committed, f"{locale}: messages.mo is stale: run scripts/console-translations.sh"


def test_the_chinese_catalogue_is_chinese() -> None:
    translated = [str(m.string) for m in catalogue(i18n.LOCALES["zh_CN"]) if m.id]
    assert all(re.search(r"[\u4e00-\u9fff]", text) for text in translated if not text.startswith("%"))
