"""The languages of mails and pages: gettext catalogs (Babel) and dates written for a language.

Catalogs are the ``.po`` files under ``digestd/locale/<language>/LC_MESSAGES/messages.po``,
compiled in memory when first used, so the source tree holds no binary files. English is the
language of the templates themselves and needs no catalog.
"""

from __future__ import annotations

import gettext
from datetime import date
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel import Locale
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from digestd.validation import LANGUAGES

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DEFAULT_LANGUAGE = "en"


def catalog_path(language: str) -> Path:
    """The ``.po`` catalog of ``language``."""
    return LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"


@lru_cache(maxsize=len(LANGUAGES) + 1)
def translations(language: str) -> gettext.NullTranslations:
    """The translations of ``language`` (none for English or a language without a catalog)."""
    path = catalog_path(language)
    if language == DEFAULT_LANGUAGE or not path.is_file():
        return gettext.NullTranslations()
    with path.open("rb") as source:
        catalog = read_po(source, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled)


@lru_cache(maxsize=len(LANGUAGES) + 1)
def locale_of(language: str) -> Locale:
    """The Babel locale of ``language`` (parsed once: every date in every digest needs it)."""
    return Locale.parse(language)


@lru_cache(maxsize=4096)
def short_date(day: date, language: str) -> str:
    """``day`` as a short month and day, e.g. "Mar 14" or "14. März"."""
    pattern = "MMM d" if language == "en" else "d. MMM"
    return format_date(day, format=pattern, locale=locale_of(language))


@lru_cache(maxsize=4096)
def long_date(day: date, language: str) -> str:
    """``day`` written out, e.g. "March 14, 2026" or "14. März 2026"."""
    return format_date(day, format="long", locale=locale_of(language))


@lru_cache(maxsize=4096)
def medium_date(day: date, language: str) -> str:
    """``day`` in a few characters, e.g. "Mar 14, 2026" or "14.03.2026"."""
    return format_date(day, format="medium", locale=locale_of(language))


def N_(message: str) -> str:  # the name pybabel looks for
    """``message`` unchanged: marks a constant for extraction; it is translated where shown."""
    return message


def language_or_default(language: str | None, default: str) -> str:
    """``language`` if digestd speaks it, else ``default``."""
    return language if language in LANGUAGES else default


def accepted_language(header: str, default: str) -> str:
    """The language of LANGUAGES an Accept-Language ``header`` prefers most (by its q values,
    "de-AT" counting as "de"), else ``default``."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:50]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        primary = tag.strip().split("-")[0].lower()
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else default
