"""What every dump parser returns, and how a paper's identity is derived from its text."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from urllib.parse import quote_plus

from digestd.folding import fold

# arXiv's archives before April 2007, when ids looked like ``hep-th/9901001``: the archive, an
# optional subject class (``math.GT/0309136``), a slash, YYMMNNN. The regex backtracks, so
# "math" does not hide "math-ph".
OLD_ARCHIVES = (
    "acc-phys|adap-org|alg-geom|ao-sci|astro-ph|atom-ph|bayes-an|chao-dyn|chem-ph|cmp-lg|comp-gas"
    "|cond-mat|cs|dg-ga|funct-an|gr-qc|hep-ex|hep-lat|hep-ph|hep-th|math|math-ph|mtrl-th|nlin"
    "|nucl-ex|nucl-th|patt-sol|physics|plasm-ph|q-alg|q-bio|q-fin|quant-ph|solv-int|supr-con"
)
_NEW_ID = r"\d{4}\.\d{4,5}"
_OLD_ID = rf"(?:{OLD_ARCHIVES})(?:\.[A-Za-z]{{2,}}(?:-[A-Za-z]{{2,}})?)?/\d{{7}}"
ARXIV_ID = re.compile(
    r"(?:arxiv\s*:\s*|arxiv\.org/(?:abs|pdf)/|huggingface\.co/papers/)"
    rf"(?P<id>{_NEW_ID}|{_OLD_ID})(?:v\d+)?",
    re.IGNORECASE,
)
# What every ARXIV_ID match contains: ":" or "/" then a new-style id (after spaces), or the "/"
# and seven digits of an old-style id. Looking for it first is several times cheaper than trying
# the case-insensitive alternation at every position of a long abstract, and most abstracts have
# no ":" or "/" at all. (It starts with a character class: an alternation at the top would make
# every abstract with a "/" slower.)
_ID_AFTER = re.compile(r"[:/](?:\s*\d{4}\.\d{4,5}|\d{7})")
# A reference that is nothing but an id: bare, "arXiv:", OAI ("oai:arXiv.org:") or an abs/pdf URL.
_WHOLE_ID = re.compile(
    r"(?:arxiv:|oai:arxiv\.org:|(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/)?"
    rf"(?P<id>{_NEW_ID}|{_OLD_ID})(?:v(?P<version>\d{{1,4}}))?(?:\.pdf)?/?",
    re.IGNORECASE | re.ASCII,
)
_WORD = re.compile(r"[^\W_]+")
# Sources are untrusted and every later stage re-reads abstracts: bound what one paper holds.
ABSTRACT_MAX_CHARS = 20_000


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


def split_arxiv_id(reference: str) -> tuple[str, int | None] | None:
    """The version-less arXiv id and the version (None when not shown) that ``reference`` names,
    or None when it is not one arXiv id. ``reference`` may be bare (``2404.01234v2``,
    ``astro-ph/0601001``), prefixed (``arXiv:``, ``oai:arXiv.org:``) or an arXiv abs/pdf URL."""
    found = _WHOLE_ID.fullmatch(reference.strip())
    if not found:
        return None
    version = found["version"]
    return found["id"], int(version) if version else None


def collapse_whitespace(text: str) -> str:
    """``text`` with every run of whitespace (hard wraps included) turned into one space and
    none at either end."""
    return " ".join(text.split())


_NAME_SUFFIX = re.compile(r"(?:jr|sr|ii|iii|iv)\.?", re.IGNORECASE)
_AND = re.compile(r"(?:^|\s+)and\s+|\s*&\s*")


def split_authors(names: str) -> tuple[str, ...]:
    """The author names in a comma-separated list such as ``"A. Smith, B. Jones and C. Li"``:
    a final "and" (with or without a comma before it) separates names too, and a suffix such as
    "Jr." stays with the name before it."""
    authors: list[str] = []
    for part in collapse_whitespace(names).split(","):
        for name in _AND.split(part.strip()):
            name = name.strip()
            if not name or name.lower() == "and":
                continue
            if authors and _NAME_SUFFIX.fullmatch(name):
                authors[-1] = f"{authors[-1]}, {name}"
            else:
                authors.append(name)
    return tuple(authors)


def unique(values: list[str]) -> tuple[str, ...]:
    """``values`` without empty strings and repeats, in first-seen order."""
    return tuple(dict.fromkeys(v for v in values if v))


def iso_date(value: str) -> date | None:
    """The calendar date an ISO 8601 date or timestamp names as written (``2012-01-23T21:15:02Z``
    and ``2016-10-09T00:00:00-04:00`` are their own days, not shifted to UTC); None if it is not
    one."""
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


def clip_abstract(text: str, *, limit: int = ABSTRACT_MAX_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary (unchanged when shorter)."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    cut = max(head.rfind(" "), head.rfind("\n"))
    return (head[:cut] if cut > 0 else text[:limit]).rstrip()


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
