"""Folding text for comparison, shared by matching and deduplication: compatibility-decomposed,
case-folded, accents dropped, and the letters that carry no decomposable accent (ø, ł, æ, œ,
ß, đ, ð, þ, ı, ħ, ŧ) spelled as the ASCII letters readers type for them, so that ``Soren`` and
``Søren`` are one word.
"""

from __future__ import annotations

import unicodedata

# Letters that NFKD leaves whole, after case folding (so only lower-case forms are needed;
# casefold already turns ß and ẞ into "ss"). Each becomes what an English keyboard user types.
_UNDECOMPOSABLE = str.maketrans(
    {
        "ø": "o",
        "ł": "l",
        "æ": "ae",
        "œ": "oe",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ı": "i",
        "ħ": "h",
        "ŧ": "t",
    }
)


def fold(text: str) -> str:
    """``text`` compatibility-decomposed, case-folded, with letters that do not decompose
    spelled out (see the module docstring); combining marks are kept (callers drop them)."""
    # NFKD twice: case folding can produce characters that decompose further (and vice versa).
    folded = unicodedata.normalize("NFKD", text).casefold().translate(_UNDECOMPOSABLE)
    return unicodedata.normalize("NFKD", folded)


def fold_word(word: str) -> str:
    """``word`` folded, keeping only letters and digits (accents are dropped)."""
    return "".join(char for char in fold(word) if char.isalnum())
