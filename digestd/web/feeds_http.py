"""HTTP endpoints for the feeds: topic Atom feeds, the index page, the OPML list, private feeds.

Topic feeds are the files the feeds job writes; they are served as they are, with a strong
ETag (a hash of the bytes) and the file's time as Last-Modified. The OPML index and the
private feeds are built per request from the database and carry an ETag only. Every refusal
of a feed (unknown slug, forged or foreign token) is the same 404, so nobody learns what
exists. A feed file not written yet (a topic added since the last feeds run) is a 503 with
Retry-After: the request wakes the feeds job in the background (feed_rebuild.py), never runs it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import partial
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from digestd import store
from digestd.config import Settings
from digestd.db import driver_line
from digestd.errors import DigestError, NotFoundError
from digestd.feeds import build_opml, written_by_digestd
from digestd.feeds_private import SentEntry, build_private_atom
from digestd.jobs import run_feeds
from digestd.jobs.feeds_job import feed_entry
from digestd.models import Subscriber
from digestd.runtime import Runtime, utc_now
from digestd.tokens import read_token
from digestd.web.feed_rebuild import FeedRebuild
from digestd.web.health import reading
from digestd.web.security import policy_with_inline_styles

log = logging.getLogger(__name__)

ATOM_TYPE = "application/atom+xml; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
OPML_TYPE = "text/x-opml; charset=utf-8"
PUBLIC_CACHE = "public, max-age=300"
PRIVATE_CACHE = "private, max-age=300"
PRIVATE_FEED_LIMIT = 100  # newest papers in a private feed
RETRY_AFTER_SECONDS = 60
BUILDING_RETRY_SECONDS = 5  # a missing feed: about how long the feeds job takes to write it

_SLUG = re.compile(r"[a-z0-9-]{1,64}")
_ENTITY_TAG = re.compile(r'(?:W/)?"([^"]*)"')
_MAX_TOKEN_LENGTH = 512  # ours are about 80 characters; longer ones are not worth a look


@dataclass(frozen=True)
class Representation:
    """A response body with the metadata that conditional requests are judged by."""

    body: bytes
    media_type: str
    cache_control: str
    last_modified: datetime | None = None

    @property
    def etag(self) -> str:
        """The strong entity tag: a hash of the bytes."""
        return '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'


def none_match(header: str, etag: str) -> bool:
    """Whether an If-None-Match value matches ``etag`` (weak comparison, RFC 9110 8.8.3.2)."""
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(f'"{tag}"' == wanted for tag in _ENTITY_TAG.findall(header))


def unmodified_since(header: str, last_modified: datetime, *, now: datetime) -> bool:
    """Whether a resource last changed at ``last_modified`` is unchanged since the
    If-Modified-Since date ``header``; False for an invalid or future date (RFC 9110 13.1.3)."""
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    if since > now:
        return False
    return last_modified.replace(microsecond=0) <= since


def http_date(when: datetime) -> str:
    """``when`` as an HTTP date (IMF-fixdate)."""
    return format_datetime(when.astimezone(UTC), usegmt=True)


def conditional_response(request: Request, rep: Representation, *, now: datetime) -> Response:
    """``rep`` as a 200 response, or 304 when the request's validators match it (HEAD is
    answered as GET by the application's HeadAsGet). If-None-Match, when sent, decides
    alone."""
    headers = {"ETag": rep.etag, "Cache-Control": rep.cache_control}
    if_none_match = request.headers.get("if-none-match")
    if_modified_since = request.headers.get("if-modified-since")
    if if_none_match is not None:
        not_modified = none_match(if_none_match, rep.etag)
    elif if_modified_since is not None and rep.last_modified is not None:
        not_modified = unmodified_since(if_modified_since, rep.last_modified, now=now)
    else:
        not_modified = False
    if not_modified:
        return Response(status_code=304, headers=headers)
    if rep.last_modified is not None:
        headers["Last-Modified"] = http_date(rep.last_modified)
    return Response(rep.body, media_type=rep.media_type, headers=headers)


def sent_entries(session: Session, subscriber_id: int, *, limit: int) -> list[SentEntry]:
    """The newest ``limit`` papers recorded as sent to a subscriber, as feed entries."""
    return [
        SentEntry(feed_entry(paper), sent_at)
        for paper, sent_at in store.sent_papers(session, subscriber_id, limit=limit)
    ]


def _not_found() -> HTTPException:
    return HTTPException(status_code=404, detail="Not Found")


def _unavailable() -> HTTPException:
    return HTTPException(
        status_code=503,
        detail="feed temporarily unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _being_built(rebuild: FeedRebuild, path: FilePath) -> HTTPException:
    """The 503 for a feed file not written yet (a topic added since the last feeds run), having
    woken the feeds job to write it."""
    if rebuild.wake():
        log.info("%s is not written yet: rebuilding the feeds", path.name)
    return HTTPException(
        status_code=503,
        detail="feed being built",
        headers={"Retry-After": str(BUILDING_RETRY_SECONDS)},
    )


def _read_feed_file(path: FilePath, media_type: str = ATOM_TYPE) -> Representation | None:
    """The feed file (or the feeds index) with its modification time, or None when it does not
    exist."""
    try:
        with path.open("rb") as handle:
            # The feeds job replaces files by rename: this handle keeps one whole version.
            modified = os.fstat(handle.fileno()).st_mtime
            body = handle.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError as exc:
        log.error("cannot read feed %s: %s", path, exc)
        raise _unavailable() from None
    return Representation(body, media_type, PUBLIC_CACHE, datetime.fromtimestamp(modified, UTC))


_Responses = dict[int | str, dict[str, Any]]
_NOT_MODIFIED = {"description": "Not modified: the client's ETag or date still holds"}
_UNAVAILABLE = {
    "description": "The database or the feed files cannot be read, or the feed is being built"
}
_ATOM_RESPONSES: _Responses = {
    200: {"description": "An Atom 1.0 feed", "content": {"application/atom+xml": {}}},
    304: _NOT_MODIFIED,
    404: {"description": "No such feed"},
    503: _UNAVAILABLE,
}
_OPML_RESPONSES: _Responses = {
    200: {"description": "An OPML 2.0 list of the topic feeds", "content": {"text/x-opml": {}}},
    304: _NOT_MODIFIED,
    503: _UNAVAILABLE,
}
_INDEX_RESPONSES: _Responses = {
    200: {"description": "The page listing every topic feed", "content": {"text/html": {}}},
    304: _NOT_MODIFIED,
    503: _UNAVAILABLE,
}
SlugParam = Annotated[str, Path(description="The topic's slug: lower-case letters, digits, -")]
TokenParam = Annotated[str, Path(description="The signed feed token from a digest")]


def _add_get(
    router: APIRouter,
    path: str,
    endpoint: Callable[..., Response],
    *,
    responses: _Responses,
    summary: str,
) -> None:
    router.add_api_route(
        path,
        endpoint,
        methods=["GET"],
        response_class=Response,
        responses=responses,
        summary=summary,
    )


@dataclass(frozen=True)
class _FeedSite:
    """What the feed endpoints share."""

    settings: Settings
    engine: Engine
    clock: Callable[[], datetime]
    rebuild: FeedRebuild
    runtime: Runtime

    @property
    def base_url(self) -> str:
        return self.settings.feeds.base_url.rstrip("/")


def _feeds_index(site: _FeedSite) -> Callable[..., Response]:
    feeds_folder = site.settings.folder("feeds")

    def feeds_index(request: Request) -> Response:
        """The page listing every topic feed (the index.html the feeds job writes)."""
        path = feeds_folder / "index.html"
        rep = _read_feed_file(path, HTML_TYPE)
        if rep is None:
            raise _being_built(site.rebuild, path)
        response = conditional_response(request, rep, now=site.clock())
        response.headers["Content-Security-Policy"] = policy_with_inline_styles(rep.body)
        return response

    return feeds_index


def _opml_index(site: _FeedSite) -> Callable[..., Response]:
    settings, engine = site.settings, site.engine

    def opml_index(request: Request) -> Response:
        """Every topic feed as an OPML 2.0 subscription list."""
        try:
            with reading(engine) as session:
                topics = [
                    (t.slug, t.title, t.description or f"Papers matching: {t.query}")
                    for t in store.topics(session)
                ]
        except (DigestError, SQLAlchemyError) as exc:
            log.error("cannot list the topics: %s", driver_line(exc))
            raise _unavailable() from None
        body = build_opml(topics, base_url=site.base_url, site_name=settings.digest.site_name)
        rep = Representation(body, OPML_TYPE, PUBLIC_CACHE)
        return conditional_response(request, rep, now=site.clock())

    return opml_index


def _private_feed(site: _FeedSite) -> Callable[..., Response]:
    settings, engine, base_url = site.settings, site.engine, site.base_url

    def private_feed(token: TokenParam, request: Request) -> Response:
        """The papers sent to the token's subscriber, newest first (paused, suppressed and
        unsubscribed subscribers keep theirs); 404 for any token that is not theirs."""
        if len(token) > _MAX_TOKEN_LENGTH:
            raise _not_found()
        try:
            secret = site.runtime.link_secret
            with reading(engine) as session:

                def email_of(subscriber_id: int) -> str | None:
                    subscriber = session.get(Subscriber, subscriber_id)
                    return subscriber.email if subscriber is not None else None

                subscriber_id = read_token(secret, "feed", token, email_of=email_of)
                subscriber = (
                    session.get(Subscriber, subscriber_id) if subscriber_id is not None else None
                )
                if subscriber_id is None or subscriber is None:
                    raise _not_found()
                entries = sent_entries(session, subscriber_id, limit=PRIVATE_FEED_LIMIT)
        except (DigestError, OSError, SQLAlchemyError) as exc:
            log.error("cannot read a private feed: %s", driver_line(exc))
            raise _unavailable() from None
        body = build_private_atom(
            entries,
            subscriber_id=subscriber_id,
            subscribed_at=subscriber.created_at,
            self_url=f"{base_url}/feeds/me/{token}.atom",
            base_url=base_url,
            author_name=settings.feeds.author_name,
            site_name=settings.digest.site_name,
        )
        rep = Representation(body, ATOM_TYPE, PRIVATE_CACHE)
        return conditional_response(request, rep, now=site.clock())

    return private_feed


def _topic_feed(site: _FeedSite) -> Callable[..., Response]:
    feeds_folder = site.settings.folder("feeds")

    def topic_feed(slug: SlugParam, request: Request) -> Response:
        """The feed file the feeds job wrote for topic ``slug``; 503 while it is being built."""
        if not _SLUG.fullmatch(slug):
            raise _not_found()
        path = feeds_folder / f"{slug}.atom"
        try:
            with reading(site.engine) as session:
                store.topic_by_slug(session, slug)
        except NotFoundError:
            raise _not_found() from None
        except (DigestError, SQLAlchemyError) as exc:
            # The files outlive a database outage: serve what the feeds job wrote, unchecked.
            log.warning("serving feed %s unchecked: %s", slug, driver_line(exc))
            rep = _read_feed_file(path)
            if rep is None or not written_by_digestd(path):
                raise _unavailable() from None
            return conditional_response(request, rep, now=site.clock())
        rep = _read_feed_file(path)
        if rep is None:
            raise _being_built(site.rebuild, path)
        return conditional_response(request, rep, now=site.clock())

    return topic_feed


def feeds_router(
    settings: Settings,
    engine: Engine,
    *,
    clock: Callable[[], datetime] = utc_now,
    runtime: Runtime | None = None,
    rebuild: FeedRebuild | None = None,
) -> APIRouter:
    """The router serving the topic feeds, their index page, the OPML list and private feeds.

    ``runtime`` holds the link secret (by default one of the router's own); ``rebuild`` runs
    the feeds job in the background when a feed file is missing (by default the router's own)."""
    runtime = runtime if runtime is not None else Runtime(settings, engine, clock=clock)
    rebuild = rebuild or FeedRebuild(partial(run_feeds, settings, engine, runtime=runtime))
    site = _FeedSite(settings, engine, clock, rebuild, runtime)
    router = APIRouter(tags=["feeds"])
    for index_path in ("/feeds/", "/feeds/index.html"):
        _add_get(
            router,
            index_path,
            _feeds_index(site),
            responses=_INDEX_RESPONSES,
            summary="The page listing every topic feed",
        )
    _add_get(
        router,
        "/feeds/index.opml",
        _opml_index(site),
        responses=_OPML_RESPONSES,
        summary="The OPML list of every topic feed",
    )
    _add_get(
        router,
        "/feeds/me/{token}.atom",
        _private_feed(site),
        responses=_ATOM_RESPONSES,
        summary="A subscriber's private feed of the papers their digests carried",
    )
    _add_get(
        router,
        "/feeds/{slug}.atom",
        _topic_feed(site),
        responses=_ATOM_RESPONSES,
        summary="A topic's Atom feed",
    )
    return router
