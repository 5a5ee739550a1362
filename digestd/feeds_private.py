"""A subscriber's private Atom feed: the papers their digests carried, newest first.

Pure (values in, bytes out) and deterministic like the topic feeds: the same entries and URL
always give the same bytes, so the HTTP layer can tag it with a hash of those bytes.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from feedgen.feed import FeedGenerator

from digestd import __version__
from digestd.feeds import (
    EMPTY_FEED_UPDATED,
    GENERATOR,
    SITE_NAME,
    FeedEntry,
    add_entry,
    xml_safe,
)


@dataclass(frozen=True)
class SentEntry:
    """One paper as it went out in a subscriber's digest."""

    uid: str
    title: str
    abstract: str
    url: str
    sent_at: datetime.datetime


def private_feed_id(base_url: str, subscriber_id: int) -> str:
    """The permanent Atom id of a subscriber's feed.

    Tokens carry their signing time, so every digest links a different URL to the same feed;
    the id rests on the subscriber instead, and readers see one feed.
    """
    name = f"{base_url.rstrip('/')}/feeds/me/{subscriber_id}"
    return uuid.uuid5(uuid.NAMESPACE_URL, name).urn


def _as_utc(when: datetime.datetime) -> datetime.datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=datetime.UTC)
    return when.astimezone(datetime.UTC)


def build_private_atom(
    entries: Sequence[SentEntry],
    *,
    subscriber_id: int,
    self_url: str,
    base_url: str,
    author_name: str,
    site_name: str = SITE_NAME,
) -> bytes:
    """The Atom 1.0 document of the papers sent to one subscriber, in the order given."""
    site = xml_safe(site_name).strip() or SITE_NAME
    home = f"{base_url.rstrip('/')}/"
    fg = FeedGenerator()
    fg.id(private_feed_id(base_url, subscriber_id))
    fg.title(f"{site}: your digests")
    fg.subtitle("The papers your digests carried, newest first")
    fg.author(name=xml_safe(author_name).strip() or SITE_NAME)
    fg.link(href=self_url, rel="self", type="application/atom+xml")
    fg.link(href=home, rel="alternate", type="text/html")
    fg.generator(GENERATOR, version=__version__)
    fg.updated(max((_as_utc(e.sent_at) for e in entries), default=EMPTY_FEED_UPDATED))
    for entry in entries:
        # The paper entered this feed when the digest carrying it went out.
        paper = FeedEntry(entry.uid, entry.title, entry.abstract, entry.url, entry.sent_at, ())
        add_entry(fg, paper, fallback_link=home)
    data: bytes = fg.atom_str(pretty=True)
    return data
