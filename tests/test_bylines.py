"""Paper metadata wherever a paper is shown: the shared byline, the digest mail (both parts,
parsed with the email package), the topic and private feeds (parsed with feedparser)."""

from __future__ import annotations

import datetime
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import feedparser
import pytest

from digestd.digest import CandidatePaper, Digest, QuerySource, plan_digest
from digestd.feeds import (
    ARXIV_CATEGORY_SCHEME,
    FEED_AUTHORS,
    TopicFeed,
    author_name,
    build_atom,
)
from digestd.feeds_private import SentEntry, build_private_atom
from digestd.formatting import Byline, paper_byline, short_authors
from digestd.jobs.feeds_job import feed_entry
from digestd.match import compile_profiles, index_papers, match_profiles
from digestd.message import build_message
from digestd.models import Paper
from digestd.render import render_digest

UTC = datetime.UTC
DAY = datetime.date(2025, 3, 14)
AUTHORS = [
    "Ada Lovelace",
    "Alan Turing",
    "Grace Hopper",
    "Émilie du Châtelet",
    "<script>alert(1)</script>",
]
ABS = "https://arxiv.org/abs/2403.01234v2"


def rich(**overrides: object) -> CandidatePaper:
    """A paper from a real source: five authors (an accent, a script tag), two categories, 0
    upvotes, its own abs page."""
    fields: dict[str, object] = {
        "id": 1,
        "uid": "arxiv:2403.01234",
        "title": "Language models <b>for</b> code",
        "abstract": "We train a language model on code.",
        "url": ABS,
        "dump_date": DAY,
        "stored_at": datetime.datetime(2025, 3, 14, 6, tzinfo=UTC),
        "authors": tuple(AUTHORS),
        "categories": ("cs.CL", "cs.LG"),
        "published": datetime.date(2025, 3, 12),
        "source": "arxiv-api",
        "upvotes": 0,
        "version": 2,
    }
    fields.update(overrides)
    return CandidatePaper(**fields)  # type: ignore[arg-type]


def bare() -> CandidatePaper:
    """A paper from a text dump: a title, an abstract, the dump's date, nothing else."""
    return CandidatePaper(
        2,
        "t:bare language model",
        "A bare language model",
        "Only a title and an abstract.",
        "https://arxiv.org/search/?searchtype=title&query=A+bare+language+model",
        DAY,
        datetime.datetime(2025, 3, 14, 7, tzinfo=UTC),
    )


# -- the byline ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, ""),
        (1, "A1"),
        (2, "A1, A2"),
        (3, "A1, A2, A3"),
        (4, "A1, A2, A3, A4"),
        (5, "A1, A2, A3, A4 et al."),
        (40, "A1, A2, A3, A4 et al."),
    ],
)
def test_authors_are_the_first_four_then_et_al(count: int, expected: str) -> None:
    assert short_authors([f"A{n}" for n in range(1, count + 1)]) == expected


def test_byline_parts_and_fallbacks() -> None:
    byline = paper_byline(rich())
    assert byline == Byline(
        authors="Ada Lovelace, Alan Turing, Grace Hopper, Émilie du Châtelet et al.",
        when="Mar 12, 2025",  # published, not the dump's date
        where="cs.CL · cs.LG",
        upvotes="0 upvotes",
    )
    assert byline.details == "Mar 12, 2025 · cs.CL · cs.LG · 0 upvotes"
    assert byline.line == (
        "Ada Lovelace, Alan Turing, Grace Hopper, Émilie du Châtelet et al. — "
        "Mar 12, 2025 · cs.CL · cs.LG · 0 upvotes"
    )
    # no categories: the source's name; one upvote; blank and multi-line names cleaned
    other = paper_byline(
        rich(categories=(), upvotes=1, authors=(" ", "Ada\nLovelace"), source="hf-daily")
    )
    assert other.line == "Ada Lovelace — Mar 12, 2025 · hf-daily · 1 upvote"
    # a text dump's paper: only its dump's date
    assert paper_byline(bare()).line == "Mar 14, 2025"
    assert paper_byline(bare()).authors == ""
    many = paper_byline(rich(categories=tuple(f"c{n}" for n in range(7)), upvotes=None))
    assert many.where == "c0 · c1 · c2 · c3 · c4 +2"
    assert many.upvotes == ""


# -- the digest mail ----------------------------------------------------------------------------


def mailed(*papers: CandidatePaper) -> EmailMessage:
    by_id = {paper.id: paper for paper in papers}
    found = match_profiles(
        compile_profiles({"q": "language model"}),
        index_papers({pid: (p.title, p.abstract) for pid, p in by_id.items()}),
    )
    planned = plan_digest(
        sources=[(QuerySource("query", "language model"), found.get("q"))],
        papers=by_id,
        already_sent=set(),
        max_papers=10,
    )
    assert planned is not None
    rendered = render_digest(
        Digest(
            subscriber_name="Ada",
            subscriber_email="ada@example.org",
            digest_date=planned.digest_date,
            entries=planned.entries,
            more_count=planned.more_count,
            unsubscribe_url="https://digest.example.org/unsubscribe?token=abc",
            manage_url=None,
            site_name="digestd",
        )
    )
    message = build_message(
        rendered,
        from_address="papers@digest.example.org",
        from_name="Paper Digest",
        to_address="ada@example.org",
        to_name="Ada",
        list_id="digest.example.org",
        unsubscribe_url="https://digest.example.org/unsubscribe?token=abc",
    )
    parsed = message_from_bytes(message.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


class Paragraphs(HTMLParser):
    """The text of each <p> and <h2> by class, and every link's target with its text."""

    def __init__(self) -> None:
        super().__init__()
        self.by_class: dict[str, list[str]] = {}
        self.links: list[tuple[str | None, str]] = []
        self._open: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in ("p", "h2"):
            self._open.append((tag, attributes.get("class") or ""))
            self.by_class.setdefault(self._open[-1][1], []).append("")
        if tag == "a":
            self._href, self._text = attributes.get("href"), ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "h2") and self._open:
            self._open.pop()
        if tag == "a":
            self.links.append((self._href, self._text))

    def handle_data(self, data: str) -> None:
        if self._open:
            self.by_class[self._open[-1][1]][-1] += data
        self._text += data


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    # The wire's CRLF line ends, as the templates wrote them.
    return text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def test_digest_shows_each_papers_byline_and_links_its_own_page() -> None:
    text, html = parts(mailed(rich(), bare()))
    authors = "Ada Lovelace, Alan Turing, Grace Hopper, Émilie du Châtelet et al."
    details = "Mar 12, 2025 · cs.CL · cs.LG · 0 upvotes"

    page = Paragraphs()
    page.feed(html)
    assert page.by_class["authors"] == [authors]
    # the bare paper has only its date; the rich one all of it, 0 upvotes included
    assert page.by_class["details"] == [details, "Mar 14, 2025"]
    titles = [(href, title) for href, title in page.links if title in page.by_class["title"]]
    assert titles == [
        (ABS, "Language models <b>for</b> code"),
        (
            "https://arxiv.org/search/?searchtype=title&query=A+bare+language+model",
            "A bare language model",
        ),
    ]
    # untrusted text stays text: the title's tag and the fifth author never become markup
    assert "<b>for</b>" not in html and "&lt;b&gt;for&lt;/b&gt;" in html
    assert "<script" not in html
    # styles are inlined, as on every other paragraph
    assert re.search(r'<p class="authors" style="[^"]*font-size: ?13px', html)

    first, second = text.split("\n2.  ")[0], text.split("\n2.  ")[1]
    title = "1.  Language models <b>for</b> code"
    assert f"{title}\n    {authors}\n    {details}\n" in first
    assert f"\n    {ABS}\n" in first
    assert "A bare language model\n" in second
    assert "\n    Mar 14, 2025\n    Matched " in second
    assert "et al." not in second and "upvote" not in second


def test_accented_and_hostile_names_reach_the_reader_as_written() -> None:
    # Show all five names by giving the byline room: the accent and the tag survive encoding.
    paper = rich(authors=("Émilie du Châtelet", "<script>x</script>", "Zoë Ağaoğlu"))
    text, html = parts(mailed(paper))
    assert "Émilie du Châtelet, <script>x</script>, Zoë Ağaoğlu\n" in text
    page = Paragraphs()
    page.feed(html)
    assert page.by_class["authors"] == ["Émilie du Châtelet, <script>x</script>, Zoë Ağaoğlu"]
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>" not in html


# -- feeds --------------------------------------------------------------------------------------


def stored(paper: CandidatePaper, **overrides: object) -> Paper:
    """``paper`` as a stored row."""
    fields: dict[str, object] = {
        "id": paper.id,
        "uid": paper.uid,
        "title_key": paper.uid,
        "arxiv_id": "2403.01234" if paper.uid.startswith("arxiv:") else None,
        "version": paper.version,
        "title": paper.title,
        "abstract": paper.abstract,
        "authors": list(paper.authors),
        "categories": list(paper.categories),
        "published": paper.published,
        "abs_url": ABS if paper.uid.startswith("arxiv:") else "",
        "upvotes": paper.upvotes,
        "source": paper.source,
        "dump_id": 1,
        "dump_date": paper.dump_date,
        "first_seen": paper.stored_at,
        "updated_at": paper.stored_at,
    }
    fields.update(overrides)
    return Paper(**fields)


def test_feed_entries_carry_authors_categories_their_page_and_byline(tmp_path: Path) -> None:
    crowd = [f"Author {n}" for n in range(1, 15)]
    rows = [
        stored(rich()),
        stored(bare()),
        stored(
            rich(id=3, uid="arxiv:2403.09999", authors=tuple(crowd)),
            abs_url="",
            updated_at=datetime.datetime(2025, 3, 14, 8, tzinfo=UTC),
        ),
    ]
    entries = tuple(feed_entry(row, ("language model",)) for row in rows)
    feed = TopicFeed(
        slug="llm",
        title="Language models",
        query="language model",
        entries=entries,
        created_at=datetime.datetime(2025, 1, 1, tzinfo=UTC),
    )
    path = tmp_path / "llm.atom"
    path.write_bytes(build_atom(feed, base_url="https://x.org/", author_name="Digest Bot"))
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    first, second, third = parsed.entries

    # every one; angle brackets are not left for a reader that shows names as HTML
    assert [author.name for author in first.authors] == [
        *AUTHORS[:4],
        "‹script›alert(1)‹/script›",
    ]
    assert [(tag.term, tag.scheme) for tag in first.tags] == [
        ("cs.CL", ARXIV_CATEGORY_SCHEME),
        ("cs.LG", ARXIV_CATEGORY_SCHEME),
        ("language model", None),
    ]
    assert first.link == ABS
    assert first.published == "2025-03-12T00:00:00+00:00"  # the paper's own date
    assert first.summary == (
        "<p>Ada Lovelace, Alan Turing, Grace Hopper, Émilie du Châtelet et al. — "
        "Mar 12, 2025 · cs.CL · cs.LG · 0 upvotes</p><p>We train a language model on code.</p>"
    )
    assert "<script>" not in path.read_text(encoding="utf-8")

    # a text dump's paper: the feed's author stands for it, no categories, its title search
    assert "authors" not in second and parsed.feed.author == "Digest Bot"
    assert [tag.term for tag in second.tags] == ["language model"]
    assert second.link.startswith("https://arxiv.org/search/")
    assert second.summary == "<p>Mar 14, 2025</p><p>Only a title and an abstract.</p>"

    # a large collaboration: the first ten, then "et al."; no abs page given: arXiv's by id
    names = [author.name for author in third.authors]
    assert names == [*crowd[:FEED_AUTHORS], "et al."]
    assert third.link == "https://arxiv.org/abs/2403.01234"


def test_private_feed_entries_carry_the_same_metadata() -> None:
    entry = feed_entry(stored(rich()))
    data = build_private_atom(
        [SentEntry(entry, datetime.datetime(2025, 3, 14, 7, tzinfo=UTC))],
        subscriber_id=1,
        subscribed_at=datetime.datetime(2025, 1, 1, tzinfo=UTC),
        self_url="https://x.org/feeds/me/token",
        base_url="https://x.org/",
        author_name="Digest Bot",
    )
    parsed = feedparser.parse(data)
    assert not parsed.bozo
    (got,) = parsed.entries
    assert [author.name for author in got.authors][:4] == AUTHORS[:4]
    assert [tag.term for tag in got.tags] == ["cs.CL", "cs.LG"]
    assert got.link == ABS


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("AT&T Labs", "AT&T Labs"),
        ("Smith &amp; Jones", "Smith ＆amp; Jones"),
        ("x &#38; y", "x ＆#38; y"),
        ("Ada <ada@example.org>", "Ada ‹ada@example.org›"),
        ("Émilie\n du\x00 Châtelet", "Émilie du Châtelet"),
    ],
)
def test_feed_author_names_cannot_be_taken_for_markup(name: str, shown: str) -> None:
    assert author_name(name) == shown


def test_a_page_link_that_is_not_http_is_passed_over() -> None:
    entry = feed_entry(stored(rich(), abs_url="javascript:alert(1)"))
    assert entry.url == "https://arxiv.org/abs/2403.01234"
