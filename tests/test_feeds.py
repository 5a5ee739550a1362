"""Topic feeds: built with feedgen, written to a temporary folder, read back with feedparser."""

from __future__ import annotations

import datetime
import html
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import feedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digestd.errors import InputError
from digestd.feeds import (
    FeedEntry,
    TopicFeed,
    build_atom,
    entry_id,
    feed_url,
    paper_dates,
    topic_page_url,
    write_feeds,
    xml_safe,
)

BASE = "https://papers.example.org/"
AUTHOR = "Digest Bot"
UTC = datetime.UTC
HOSTILE = "<script>alert(1)</script> & ]]>"
TOPIC_CREATED = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def paper(n: int, *, title: str | None = None, abstract: str | None = None) -> FeedEntry:
    return FeedEntry(
        uid=f"arxiv:2403.{n:05d}",
        title=title if title is not None else f"Paper number {n}",
        abstract=abstract if abstract is not None else f"Abstract of paper {n}.",
        url=f"https://arxiv.org/abs/2403.{n:05d}",
        published=datetime.datetime(2024, 3, n, tzinfo=UTC),
        updated=datetime.datetime(2024, 3, n, 6, 30, 0, n, tzinfo=UTC),
        matched_terms=("model", '"text to sql"'),
    )


def topic(slug: str, *entries: FeedEntry, title: str | None = None) -> TopicFeed:
    return TopicFeed(
        slug=slug,
        title=title if title is not None else f"Topic {slug}",
        query=f'{slug} OR "text to sql"',
        entries=entries,
        created_at=TOPIC_CREATED,
    )


def parse(path: Path) -> feedparser.FeedParserDict:
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed


class IndexPage(HTMLParser):
    """Collects the autodiscovery links, the anchors and the visible text of the index page."""

    def __init__(self) -> None:
        super().__init__()
        self.alternates: list[dict[str, str | None]] = []
        self.anchors: list[str | None] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "link" and attributes.get("rel") == "alternate":
            self.alternates.append(attributes)
        if tag == "a":
            self.anchors.append(attributes.get("href"))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_index(path: Path) -> IndexPage:
    page = IndexPage()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_feed_url() -> None:
    assert feed_url("https://x.org/", "llm") == "https://x.org/feeds/llm.atom"
    assert feed_url("https://x.org/sub", "a-1") == "https://x.org/sub/feeds/a-1.atom"


def test_two_topic_feeds_parse_with_exact_fields(tmp_path: Path) -> None:
    llm = topic("llm", paper(3), paper(2), paper(1))
    sql = topic("sql", paper(5))
    written = write_feeds([llm, sql], out_dir=tmp_path, base_url=BASE, author_name=AUTHOR)
    assert written == [tmp_path / "llm.atom", tmp_path / "sql.atom", tmp_path / "index.html"]

    parsed = parse(tmp_path / "llm.atom")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "digestd: Topic llm"
    assert parsed.feed.subtitle == 'Papers matching: llm OR "text to sql"'
    assert parsed.feed.author == AUTHOR
    assert parsed.feed.id.startswith("urn:uuid:")
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links["self"] == "https://papers.example.org/feeds/llm.atom"
    # The topic's part of the front page, which the web application serves.
    assert links["alternate"] == "https://papers.example.org/#topic-llm"
    assert parsed.feed.updated == "2024-03-03T06:30:00.000003+00:00"

    assert len(parsed.entries) == 3
    for got, want in zip(parsed.entries, llm.entries, strict=True):
        assert got.id == f"urn:digestd:paper:{want.uid}"
        assert got.title == want.title
        assert got.summary == want.abstract
        assert got.summary_detail.type == "text/html"
        assert got.title_detail.type == "text/html"
        assert got.link == want.url
        assert got.published == want.published.isoformat()
        assert got.updated == want.updated.isoformat()
        assert [tag.term for tag in got.tags] == ["model", '"text to sql"']

    other = parse(tmp_path / "sql.atom")
    assert len(other.entries) == 1
    assert other.feed.id != parsed.feed.id
    assert other.entries[0].id == entry_id("arxiv:2403.00005")


def test_index_lists_topics_with_discovery_links(tmp_path: Path) -> None:
    feeds = [topic("llm", paper(2), paper(1)), topic("sql", paper(5), title=HOSTILE)]
    write_feeds(feeds, out_dir=tmp_path, base_url=BASE, author_name=AUTHOR)
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    page = read_index(tmp_path / "index.html")
    urls = [feed_url(BASE, "llm"), feed_url(BASE, "sql")]

    assert [link["href"] for link in page.alternates] == urls
    assert all(link["type"] == "application/atom+xml" for link in page.alternates)
    assert page.alternates[1]["title"] == f"digestd: {HOSTILE}"
    # links work when the folder is opened from disk or served under base_url; the full URL is shown
    assert page.anchors == ["llm.atom", "sql.atom"]
    text = "".join(page.text)
    assert all(url in text for url in urls)
    assert "Topic llm" in text
    assert HOSTILE in text
    assert 'llm OR "text to sql"' in text
    assert "(2 papers)" in text
    assert "(1 paper)" in text
    assert "<script>" not in html


def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    feeds = [topic("llm", paper(2), paper(1)), topic("empty")]
    first, second = tmp_path / "first", tmp_path / "second"
    write_feeds(feeds, out_dir=first, base_url=BASE, author_name=AUTHOR)
    write_feeds(feeds, out_dir=second, base_url=BASE, author_name=AUTHOR)
    for name in ("llm.atom", "empty.atom", "index.html"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert [e.id for e in parse(first / "llm.atom").entries] == [
        e.id for e in parse(second / "llm.atom").entries
    ]


def test_empty_feed_is_dated_by_its_topic(tmp_path: Path) -> None:
    # Not by now() (a rebuild would change its bytes), not by 1970 (validators call it
    # implausible): by when the topic was made.
    write_feeds([topic("empty")], out_dir=tmp_path, base_url=BASE, author_name=AUTHOR)
    parsed = parse(tmp_path / "empty.atom")
    assert parsed.entries == []
    assert parsed.feed.updated == TOPIC_CREATED.isoformat()


def test_a_paper_is_published_on_its_own_date_never_in_the_future() -> None:
    stored = datetime.datetime(2024, 3, 15, 9, 0, 0, 7, tzinfo=UTC)
    assert paper_dates(datetime.date(2024, 3, 14), stored) == (
        datetime.datetime(2024, 3, 14, tzinfo=UTC),
        stored,
    )
    # A dump dated ahead of the clock that stored it is published when it was stored.
    assert paper_dates(datetime.date(2024, 3, 16), stored) == (stored, stored)
    naive = datetime.datetime(2024, 3, 15, 9)
    assert paper_dates(datetime.date(2024, 3, 14), naive)[1] == naive.replace(tzinfo=UTC)


def test_newer_entry_keeps_old_ids() -> None:
    before = feedparser.parse(
        build_atom(topic("llm", paper(2), paper(1)), base_url=BASE, author_name=AUTHOR)
    )
    after = feedparser.parse(
        build_atom(topic("llm", paper(9), paper(2), paper(1)), base_url=BASE, author_name=AUTHOR)
    )
    assert [e.id for e in after.entries[1:]] == [e.id for e in before.entries]
    assert after.feed.id == before.feed.id
    assert after.feed.updated == "2024-03-09T06:30:00.000009+00:00"
    assert after.entries[0].id == entry_id("arxiv:2403.00009")


def test_entry_id_depends_on_uid_only() -> None:
    one = paper(1)
    moved = replace(one, title="Retitled", published=datetime.datetime(2030, 1, 1, tzinfo=UTC))
    a = feedparser.parse(build_atom(topic("a", one, paper(2)), base_url=BASE, author_name=AUTHOR))
    b = feedparser.parse(
        build_atom(topic("b", paper(2), moved), base_url="https://other.example/", author_name="X")
    )
    assert a.entries[0].id == b.entries[1].id == "urn:digestd:paper:arxiv:2403.00001"


def test_hostile_text_survives_escaped_and_control_chars_dropped(tmp_path: Path) -> None:
    title = f"{HOSTILE} \x00\x07\x1b量子 Ω naïve"
    abstract = f"Abstract {HOSTILE}\x0b\x7f\x85\x91 with\ud800 量子 Ω naïve\ufffe\uffff end"
    entry = replace(paper(1, title=title, abstract=abstract), matched_terms=("a&b", "\x01"))
    feed = TopicFeed(
        slug="hostile",
        title=HOSTILE,
        query=f"{HOSTILE}\x00",
        entries=(entry,),
        created_at=TOPIC_CREATED,
    )
    write_feeds([feed], out_dir=tmp_path, base_url=BASE, author_name=f"{AUTHOR}\x1b")

    raw = (tmp_path / "hostile.atom").read_bytes()
    assert b"<script>" not in raw
    assert b"&lt;script" not in raw  # escaped as HTML, then as XML: &amp;lt;script
    parsed = parse(tmp_path / "hostile.atom")
    # Text constructs are HTML: feedparser hands them over as HTML, which a reader shows as
    # exactly the text written.
    assert html.unescape(parsed.feed.title) == f"digestd: {HOSTILE}"
    assert html.unescape(parsed.feed.subtitle) == f"Papers matching: {HOSTILE}"
    assert parsed.feed.author == AUTHOR
    got = parsed.entries[0]
    assert html.unescape(got.title) == f"{HOSTILE} 量子 Ω naïve"
    assert html.unescape(got.summary) == f"Abstract {HOSTILE} with 量子 Ω naïve end"
    assert [tag.term for tag in got.tags] == ["a&b"]


def test_blank_title_and_abstract_still_make_a_valid_entry() -> None:
    entry = replace(paper(1, title="\x00 ", abstract=""), url="")
    parsed = feedparser.parse(build_atom(topic("t", entry), base_url=BASE, author_name=""))
    assert not parsed.bozo
    assert parsed.entries[0].title == "(untitled)"
    assert "summary" not in parsed.entries[0]
    assert parsed.entries[0].link == topic_page_url(BASE, "t")
    assert parsed.feed.author == "digestd"


def test_stale_topic_removed_and_foreign_files_kept(tmp_path: Path) -> None:
    write_feeds(
        [topic("llm", paper(1)), topic("old", paper(2))],
        out_dir=tmp_path,
        base_url=BASE,
        author_name=AUTHOR,
    )
    foreign = tmp_path / "handmade.atom"
    foreign.write_text('<feed xmlns="http://www.w3.org/2005/Atom"><title>mine</title></feed>')
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")

    write_feeds([topic("llm", paper(1))], out_dir=tmp_path, base_url=BASE, author_name=AUTHOR)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "handmade.atom",
        "index.html",
        "llm.atom",
        "notes.txt",
    ]
    page = read_index(tmp_path / "index.html")
    assert [link["href"] for link in page.alternates] == [feed_url(BASE, "llm")]


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    feeds = [topic("llm", paper(1)), topic("sql", paper(2))]
    for _ in range(2):
        write_feeds(feeds, out_dir=tmp_path, base_url=BASE, author_name=AUTHOR)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "llm.atom", "sql.atom"]


@pytest.mark.parametrize("slugs", [["../evil"], ["UPPER"], [""], ["a b"], ["dup", "dup"]])
def test_bad_or_repeated_slug_is_refused_before_writing(tmp_path: Path, slugs: list[str]) -> None:
    with pytest.raises(InputError):
        write_feeds([topic(s) for s in slugs], out_dir=tmp_path, base_url=BASE, author_name=AUTHOR)
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


ATOM = "{http://www.w3.org/2005/Atom}"


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(title=st.text(), abstract=st.text(), term=st.text(), topic_title=st.text())
@pytest.mark.slow
def test_arbitrary_text_always_yields_a_valid_feed(
    title: str, abstract: str, term: str, topic_title: str
) -> None:
    entry = replace(paper(1, title=title, abstract=abstract), matched_terms=(term,))
    feed = TopicFeed(
        slug="prop", title=topic_title, query=abstract, entries=(entry,), created_at=TOPIC_CREATED
    )
    data = build_atom(feed, base_url=BASE, author_name=title)

    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert len(parsed.entries) == 1
    assert parsed.entries[0].id == entry_id(entry.uid)

    # The exact text is checked on the XML itself: feedparser "repairs" strings that
    # look double-encoded (e.g. 'Â¡' -> '¡'), so it cannot be the judge of fidelity.
    root = ElementTree.fromstring(data)
    element = root.find(f"{ATOM}entry")
    assert element is not None
    title_element = element.find(f"{ATOM}title")
    assert title_element is not None and title_element.get("type") == "html"
    assert html.unescape(title_element.text or "") == (xml_safe(title).strip() or "(untitled)")
    summary = element.find(f"{ATOM}summary")
    if xml_safe(abstract).strip():
        assert summary is not None and summary.get("type") == "html"
        assert html.unescape(summary.text or "") == xml_safe(abstract).strip()
    else:
        assert summary is None


def test_feed_files_are_world_readable_whatever_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o077)
    try:
        write_feeds([topic("llm", paper(1))], out_dir=tmp_path, base_url=BASE, author_name=AUTHOR)
    finally:
        os.umask(old)
    for name in ("llm.atom", "index.html"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
