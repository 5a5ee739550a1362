"""What every dump parser returns, and how a paper's identity is derived from its text."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from urllib.parse import quote_plus

from digestd.folding import fold

ARXIV_ID = re.compile(
    r"(?:arxiv\s*:\s*|arxiv\.org/(?:abs|pdf)/|huggingface\.co/papers/)"
    r"(?P<id>\d{4}\.\d{4,5})(?:v\d+)?",
    re.IGNORECASE,
)
# What every ARXIV_ID match contains (the id right after ":" and spaces, or after "/"). Looking
# for it first is several times cheaper than trying the case-insensitive alternation at every
# position of a long abstract, and most abstracts have no ":" or "/" at all.
_ID_AFTER = re.compile(r"[:/]\s*\d{4}\.\d{4,5}")
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class ParsedPaper:
    """One paper as a dump states it."""

    title: str
    abstract: str
    arxiv_id: str | None = None


@dataclass(frozen=True)
class ParsedDump:
    """The papers of one dump, its date, and what the parser tolerated."""

    dump_date: date
    papers: tuple[ParsedPaper, ...]
    warnings: tuple[str, ...] = ()


def find_arxiv_id(title: str, abstract: str) -> str | None:
    """The arXiv id (without version) that the text explicitly carries, if any."""
    for text in (title, abstract):
        if (
            ("/" in text or ":" in text)
            and _ID_AFTER.search(text)
            and (found := ARXIV_ID.search(text))
        ):
            return found["id"]
    return None


def title_key(title: str) -> str:
    """A hash of the title folded (digestd.folding) to its letters and digits, for deduplication."""
    if title.isascii():  # NFKD changes nothing, casefold is lower, no combining marks to drop
        folded = title.lower()
    else:
        folded = "".join(c for c in fold(title) if not unicodedata.combining(c))
    return hashlib.sha256(" ".join(_WORD.findall(folded)).encode()).hexdigest()[:32]


def paper_identity(paper: ParsedPaper) -> tuple[str, str]:
    """The paper's uid (see ``paper_uid``) and its title key, the title folded only once."""
    key = title_key(paper.title)
    return (f"arxiv:{paper.arxiv_id}" if paper.arxiv_id else f"t:{key}"), key


def paper_uid(paper: ParsedPaper) -> str:
    """The paper's identity: its arXiv id when the text has one, else a hash of its title."""
    return f"arxiv:{paper.arxiv_id}" if paper.arxiv_id else f"t:{title_key(paper.title)}"


def paper_url(*, arxiv_id: str | None, title: str) -> str:
    """A link for the paper: its arXiv page, or an arXiv title search when no id is known."""
    if arxiv_id:
        return f"https://arxiv.org/abs/{arxiv_id}"
    return f"https://arxiv.org/search/?searchtype=title&query={quote_plus(title)}"
