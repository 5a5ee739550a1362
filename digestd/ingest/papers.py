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
    """One paper as a source states it; every field but title and abstract is optional.

    ``arxiv_id`` is version-less (``2404.01234`` or ``astro-ph/0601001``); ``version`` is the
    version the source shows (``v2`` -> 2). ``categories`` come primary first. ``announce_type``
    is arXiv RSS's ``new``, ``cross``, ``replace`` or ``replace-cross`` (else empty)."""

    title: str
    abstract: str
    arxiv_id: str | None = None
    version: int | None = None
    doi: str | None = None
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    published: date | None = None  # first version's date
    updated: date | None = None  # this version's date
    journal_ref: str = ""
    comment: str = ""
    abs_url: str = ""  # the paper's own page (arXiv abs)
    pdf_url: str = ""
    hf_url: str = ""  # its Hugging Face papers page
    upvotes: int | None = None
    announce_type: str = ""


@dataclass(frozen=True)
class ParsedDump:
    """The papers of one dump or response, its date, and what the parser tolerated.

    ``format`` names the parser that read it: "text", "arxiv-api", "arxiv-rss", "hf-json" or
    "jsonl". An empty ``papers`` is an empty day (a success with nothing new)."""

    dump_date: date
    papers: tuple[ParsedPaper, ...]
    warnings: tuple[str, ...] = ()
    format: str = "text"


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
    return _uid(paper, key), key


def paper_uid(paper: ParsedPaper) -> str:
    """The paper's identity: ``arxiv:<id>`` (version-less) when known, else ``doi:<doi>``
    (lower-case), else ``t:<hash of its folded title>``."""
    return _uid(paper, None)


def _uid(paper: ParsedPaper, key: str | None) -> str:
    if paper.arxiv_id:
        return f"arxiv:{paper.arxiv_id}"
    if paper.doi:
        return f"doi:{paper.doi.lower()}"
    return f"t:{key if key is not None else title_key(paper.title)}"


def paper_url(*, arxiv_id: str | None, title: str, abs_url: str = "", hf_url: str = "") -> str:
    """A link for the paper: its own page (abs), its arXiv page, its Hugging Face page, or an
    arXiv title search when nothing better is known."""
    if abs_url:
        return abs_url
    if arxiv_id:
        return f"https://arxiv.org/abs/{arxiv_id}"
    if hf_url:
        return hf_url
    return f"https://arxiv.org/search/?searchtype=title&query={quote_plus(title)}"
