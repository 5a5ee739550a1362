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
    GENERATOR,
    SITE_NAME,
    FeedEntry,
    add_entry,
    as_utc,
    atom_bytes,
    home_url,
    xml_safe,
)


@dataclass(frozen=True)
class SentEntry:
    """One paper as it went out in a subscriber's digest: the paper's own feed entry and when
    the digest carrying it was sent."""

    paper: FeedEntry
    sent_at: datetime.datetime


def private_feed_id(base_url: str, subscriber_id: int) -> str:
    """The permanent Atom id of a subscriber's feed.

    Tokens carry their signing time, so every digest links a different URL to the same feed;
    the id rests on the subscriber instead, and readers see one feed.
    """
    name = f"{base_url.rstrip('/')}/feeds/me/{subscriber_id}"
    return uuid.uuid5(uuid.NAMESPACE_URL, name).urn


def build_private_atom(
    entries: Sequence[SentEntry],
    *,
    subscriber_id: int,
    subscribed_at: datetime.datetime,
    self_url: str,
    base_url: str,
    author_name: str,
    site_name: str = SITE_NAME,
) -> bytes:
    """The Atom 1.0 document of the papers sent to one subscriber, in the order given; it was
    last updated by the newest digest (when ``subscribed_at`` while there is none)."""
    site = xml_safe(site_name).strip() or SITE_NAME
    home = home_url(base_url)
    fg = FeedGenerator()
    fg.id(private_feed_id(base_url, subscriber_id))
    fg.title(f"{site}: your digests")
    fg.subtitle("The papers your digests carried, newest first")
    fg.author(name=xml_safe(author_name).strip() or SITE_NAME)
    fg.link(href=self_url, rel="self", type="application/atom+xml")
    fg.link(href=home, rel="alternate", type="text/html")
    fg.generator(GENERATOR, version=__version__)
    fg.updated(max((as_utc(e.sent_at) for e in entries), default=as_utc(subscribed_at)))
    for entry in entries:
        add_entry(fg, entry.paper, fallback_link=home)
    return atom_bytes(fg)
