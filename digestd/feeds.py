"""Atom feeds per topic, the index page and the OPML list of them; files written atomically.

Building a feed is pure (values in, bytes out) and deterministic: the same topic
and entries always give the same bytes, so a rebuild of unchanged data leaves
feed readers and HTTP caches nothing new to fetch.

Every feed passes the W3C Feed Validator without a warning, whatever the titles hold: each
text construct (titles, subtitle, summaries) is declared ``type="html"`` and carries its text
escaped as HTML, so a title such as ``</b> & co`` is shown as written instead of being taken
for markup; an entry is published on the paper's own date and updated at the paper's own
instant, which no two papers share.

An entry names the paper's authors (``<author>``, the first ``FEED_AUTHORS`` and then one
"et al."; entries without authors fall back on the feed's own author, which keeps them valid),
its categories (``<category>`` in arXiv's scheme, primary first, before the matched terms,
which carry no scheme), and links the paper's own page. Its summary starts with the byline.
"""

from __future__ import annotations

import datetime
import html
import html.entities
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from feedgen.feed import FeedGenerator
from lxml import etree

from digestd import __version__
from digestd.atomic import write_atomic
from digestd.errors import InputError
from digestd.render import render_page

SITE_NAME = "digestd"
GENERATOR = "digestd"
INDEX_NAME = "index.html"
INDEX_TEMPLATE = "feeds_index.html"
ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
_TEXT_CONSTRUCTS = tuple(f"{{{ATOM_NAMESPACE}}}{name}" for name in ("title", "subtitle", "summary"))

_SLUG = re.compile(r"[a-z0-9-]+")
# Everything outside the XML 1.0 Char production (C0 controls other than tab, LF and
# CR, lone surrogates, U+FFFE and U+FFFF), which lxml refuses outright, and also DEL
# and the C1 controls: XML allows those but discourages them, and feed readers
# (feedparser among them) turn them into cp1252 punctuation, so they never survive.
# U+FFFD (a character lost before it reached us) goes too: validators flag it.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffc\U00010000-\U0010ffff]")
# Only files carrying this generator element are ours to delete; lxml escapes '>' in
# text, so no title or abstract can forge it.
_OWN_FEED_MARKER = f">{GENERATOR}</generator>".encode()
_MARKER_SEARCH_BYTES = 65536
# An ampersand that starts a character reference: "&#38;", "&amp", "&eacute;".
_REFERENCE_START = re.compile(
    "&(?=#|(?:" + "|".join(sorted(html.entities.name2codepoint, key=len, reverse=True)) + ")\\b)"
)
# A large collaboration lists hundreds of authors: an entry names this many, then "et al.".
FEED_AUTHORS = 10
# The scheme arXiv's own Atom API gives its categories.
ARXIV_CATEGORY_SCHEME = "http://arxiv.org/schemas/atom"


@dataclass(frozen=True)
class FeedEntry:
    """One paper as it appears in a feed: ``published`` on its own date, ``updated`` at the
    instant its stored text last changed (see ``paper_dates``)."""

    uid: str
    title: str
    abstract: str
    url: str
    published: datetime.datetime
    updated: datetime.datetime
    matched_terms: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()  # primary first
    byline: str = ""  # one line (formatting.Byline.line), shown above the abstract


@dataclass(frozen=True)
class TopicFeed:
    """One topic's feed: its identity, query and entries, newest first."""

    slug: str
    title: str
    query: str
    entries: tuple[FeedEntry, ...]
    created_at: datetime.datetime  # dates the feed while it has no entry
    description: str = ""


def feed_url(base_url: str, slug: str) -> str:
    """The public URL of the Atom feed of topic ``slug``."""
    return f"{base_url.rstrip('/')}/feeds/{slug}.atom"


def topic_page_url(base_url: str, slug: str) -> str:
    """The public page of a topic: its part of the front page (its newest papers, its feed)."""
    return f"{base_url.rstrip('/')}/#topic-{slug}"


def home_url(base_url: str) -> str:
    """The site's front page."""
    return f"{base_url.rstrip('/')}/"


def paper_dates(
    paper_date: datetime.date, updated: datetime.datetime
) -> tuple[datetime.datetime, datetime.datetime]:
    """A paper's (published, updated) instants in a feed: published at the start (UTC) of its
    own date, but never after ``updated``, the instant its stored text last changed (a dump
    dated ahead of the clock must not publish in the future)."""
    changed = as_utc(updated)
    start = datetime.datetime.combine(paper_date, datetime.time(), tzinfo=datetime.UTC)
    return min(start, changed), changed


def xml_safe(text: str) -> str:
    """``text`` without control characters (but tab, LF, CR), lone surrogates, U+FFFE/U+FFFF."""
    return _NOT_XML_CHAR.sub("", text)


def feed_id(base_url: str, slug: str) -> str:
    """The permanent Atom id of a topic feed: a name-based UUID URN of its URL."""
    return uuid.uuid5(uuid.NAMESPACE_URL, feed_url(base_url, slug)).urn


def entry_id(uid: str) -> str:
    """The permanent Atom id of a paper, the same in every feed and every rebuild."""
    return "urn:digestd:paper:" + quote(xml_safe(uid), safe=":.-_~+@")


def as_utc(when: datetime.datetime) -> datetime.datetime:
    """``when`` in UTC; a naive time is taken as UTC (one odd row must not sink a feed)."""
    if when.tzinfo is None:
        return when.replace(tzinfo=datetime.UTC)
    return when.astimezone(datetime.UTC)


def build_atom(
    feed: TopicFeed, *, base_url: str, author_name: str, site_name: str = SITE_NAME
) -> bytes:
    """The Atom 1.0 document of ``feed``, UTF-8 encoded, identical for identical input."""
    fg = FeedGenerator()
    fg.id(feed_id(base_url, feed.slug))
    fg.title(
        f"{xml_safe(site_name).strip() or SITE_NAME}: {xml_safe(feed.title).strip() or feed.slug}"
    )
    query = xml_safe(feed.query).strip()
    description = xml_safe(feed.description).strip()
    if description or query:
        fg.subtitle(description or f"Papers matching: {query}")
    fg.author(name=xml_safe(author_name).strip() or SITE_NAME)
    fg.link(href=feed_url(base_url, feed.slug), rel="self", type="application/atom+xml")
    fg.link(href=topic_page_url(base_url, feed.slug), rel="alternate", type="text/html")
    fg.generator(GENERATOR, version=__version__)
    fg.updated(max((as_utc(e.updated) for e in feed.entries), default=as_utc(feed.created_at)))
    for entry in feed.entries:
        add_entry(fg, entry, fallback_link=topic_page_url(base_url, feed.slug))
    return atom_bytes(fg)


def atom_bytes(fg: FeedGenerator) -> bytes:
    """The feed's Atom document with every text construct declared HTML and its text escaped
    as HTML (feedgen writes them as plain text, which validators and readers suspect of holding
    markup whenever a title has ``</b>`` or ``&amp;`` in it). A construct already declared HTML
    was built as HTML here (``entry_summary``) and is kept as it is."""
    root = etree.fromstring(fg.atom_str(), etree.XMLParser(remove_blank_text=True))
    for element in root.iter(*_TEXT_CONSTRUCTS):
        if element.get("type") == "html":
            continue
        element.set("type", "html")
        element.text = html.escape(element.text or "", quote=False)
    data: bytes = etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="UTF-8")
    return data


def add_entry(fg: FeedGenerator, entry: FeedEntry, *, fallback_link: str) -> None:
    """Append ``entry`` to the feed being built, every text made safe for XML."""
    fe = fg.add_entry(order="append")
    fe.id(entry_id(entry.uid))
    fe.title(xml_safe(entry.title).strip() or "(untitled)")
    for name in entry_authors(entry.authors):
        fe.author(name=name)
    summary = entry_summary(entry)
    if summary:
        fe.summary(summary, type="html")
    # Atom requires an alternate link on an entry without content.
    fe.link(href=xml_safe(entry.url).strip() or fallback_link, rel="alternate")
    fe.published(as_utc(entry.published))
    fe.updated(as_utc(entry.updated))
    categories = [xml_safe(term).strip() for term in entry.categories]
    for term in dict.fromkeys(term for term in categories if term):
        fe.category(term=term, scheme=ARXIV_CATEGORY_SCHEME)
    for term in entry.matched_terms:
        clean = xml_safe(term).strip()
        if clean:
            fe.category(term=clean)


def entry_authors(authors: Sequence[str]) -> list[str]:
    """The author names an entry carries: the first ``FEED_AUTHORS``, then "et al." if more."""
    names = [name for name in (author_name(a) for a in authors) if name]
    return names[:FEED_AUTHORS] + (["et al."] if len(names) > FEED_AUTHORS else [])


def author_name(name: str) -> str:
    """``name`` as an Atom ``<name>``, which is plain text with no type to declare it so: some
    readers still show it as HTML, so angle brackets become ‹ and › and an ampersand that would
    start a character reference becomes ＆ (no real name needs either; validators warn)."""
    text = xml_safe(" ".join(name.split())).replace("<", "‹").replace(">", "›")
    return _REFERENCE_START.sub("＆", text)


def entry_summary(entry: FeedEntry) -> str:
    """An entry's summary as HTML: the byline and the abstract in paragraphs of their own, or,
    without a byline, the abstract alone as escaped text (as every summary was before)."""
    abstract = html.escape(xml_safe(entry.abstract).strip(), quote=False)
    byline = html.escape(xml_safe(entry.byline).strip(), quote=False)
    if not byline:
        return abstract
    return f"<p>{byline}</p>" + (f"<p>{abstract}</p>" if abstract else "")


def write_feeds(
    feeds: Sequence[TopicFeed],
    *,
    out_dir: Path,
    base_url: str,
    author_name: str,
    site_name: str = SITE_NAME,
    templates_dir: Path | None = None,
) -> list[Path]:
    """Write one .atom file per topic and the index page; delete feeds of vanished topics.

    Returns the paths written: the feeds in the order given, then the index page.
    Raises InputError before writing anything if a slug is invalid or repeated.
    """
    _check_slugs(feeds)
    written: list[Path] = []
    for feed in feeds:
        path = out_dir / f"{feed.slug}.atom"
        write_atomic(
            path,
            build_atom(feed, base_url=base_url, author_name=author_name, site_name=site_name),
        )
        written.append(path)
    index_path = out_dir / INDEX_NAME
    write_atomic(
        index_path,
        render_index(
            feeds, base_url=base_url, site_name=site_name, templates_dir=templates_dir
        ).encode(),
    )
    written.append(index_path)
    remove_stale_feeds(out_dir, keep={feed.slug for feed in feeds})
    return written


def render_index(
    feeds: Sequence[TopicFeed],
    *,
    base_url: str,
    site_name: str = SITE_NAME,
    templates_dir: Path | None = None,
) -> str:
    """The HTML page listing every topic with its query, entry count and feed URL."""
    topics = [
        {
            "title": xml_safe(feed.title).strip() or feed.slug,
            "query": xml_safe(feed.query),
            "count": len(feed.entries),
            "url": feed_url(base_url, feed.slug),
            "file": f"{feed.slug}.atom",
        }
        for feed in feeds
    ]
    return render_page(
        INDEX_TEMPLATE, templates_dir=templates_dir, site_name=site_name, topics=topics
    )


def remove_stale_feeds(out_dir: Path, *, keep: set[str]) -> list[Path]:
    """Delete the .atom files digestd wrote in ``out_dir`` for topics not in ``keep``."""
    removed: list[Path] = []
    if not out_dir.is_dir():
        return removed
    for path in sorted(out_dir.glob("*.atom")):
        if path.stem in keep or not path.is_file() or not written_by_digestd(path):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def written_by_digestd(path: Path) -> bool:
    """Whether ``path`` is an Atom file that digestd generated (not one put there by hand)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_MARKER_SEARCH_BYTES)
    except OSError:
        return False
    return _OWN_FEED_MARKER in head


def _check_slugs(feeds: Sequence[TopicFeed]) -> None:
    seen: set[str] = set()
    for feed in feeds:
        if not _SLUG.fullmatch(feed.slug):
            raise InputError(
                f"invalid topic slug {feed.slug!r}",
                hint="use lowercase letters, digits and hyphens only",
            )
        if feed.slug in seen:
            raise InputError(
                f"two topics share the slug {feed.slug!r}", hint="give each topic its own slug"
            )
        seen.add(feed.slug)


def build_opml(
    topics: Sequence[tuple[str, str, str]], *, base_url: str, site_name: str = SITE_NAME
) -> bytes:
    """The OPML 2.0 subscription list of the topic feeds, from (slug, title, description)
    triples."""
    site = xml_safe(site_name).strip() or SITE_NAME
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = f"{site}: topic feeds"
    ET.SubElement(head, "docs").text = "https://opml.org/spec2.opml"
    body = ET.SubElement(root, "body")
    for slug, title, description in topics:
        name = xml_safe(title).strip() or slug
        outline = ET.SubElement(body, "outline", type="rss", text=name, title=name)
        outline.set("xmlUrl", feed_url(base_url, slug))
        outline.set("htmlUrl", topic_page_url(base_url, slug))
        outline.set("description", xml_safe(description).strip())
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"
