"""What the web page tests share: a client with the CSRF dance, sign-up forms, the mails and
links a real SMTP server received, subscribers, topics and papers put in place."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import select

from digestd import store
from digestd.config import load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.models import Dump, Paper, Subscriber
from digestd.tokens import make_token
from digestd.web.security import CSRF_COOKIE
from tests.conftest import free_port
from tests.support.web_server import (
    Clock,
    WebSite,
    running_app,
    site_settings,
)

H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.S)
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]*)"')


# Helpers


def h1(response: httpx.Response) -> str:
    found = H1.search(response.text)
    assert found, response.text[:500]
    return found.group(1).strip()


def client(site: WebSite) -> httpx.Client:
    return httpx.Client(base_url=site.base_url, timeout=10)


def csrf_of(http: httpx.Client, path: str = "/") -> str:
    """GET a page with a form; its csrf field, which must equal the cookie."""
    page = http.get(path)
    assert page.status_code == 200
    field = CSRF_FIELD.search(page.text)
    assert field is not None
    assert http.cookies.get(CSRF_COOKIE) == field.group(1)
    return field.group(1)


def sign_up_form(email: str, **fields: object) -> dict[str, object]:
    form: dict[str, object] = {
        "email": email,
        "queries": "language model",
        "frequency": "daily",
        "send_hour": "7",
        "timezone": "UTC",
        "weekday": "mon",
    }
    form.update(fields)
    return form


def subscribe(http: httpx.Client, email: str, **fields: object) -> httpx.Response:
    return http.post("/subscribe", data={**sign_up_form(email, **fields), "csrf": csrf_of(http)})


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def link_in(text: str, purpose: str) -> str:
    lines = [line for line in text.splitlines() if re.fullmatch(rf"http://\S+/{purpose}/\S+", line)]
    assert len(lines) == 1, text
    return lines[0]


def subscriber(site: WebSite, email: str) -> Subscriber | None:
    with session_scope(site.engine) as session:
        return session.exec(select(Subscriber).where(Subscriber.email == email)).first()


def subscriber_rows(site: WebSite) -> list[tuple[object, ...]]:
    """Every subscriber with their queries and topics: what no GET may change."""
    with session_scope(site.engine) as session:
        queries = store.queries_by_subscriber(session)
        topics = store.topics_by_subscriber(session)
        return [
            (
                *s.model_dump().items(),
                tuple(queries.get(s.id or 0, [])),
                tuple(t.slug for t in topics.get(s.id or 0, [])),
            )
            for s in session.exec(select(Subscriber).order_by(Subscriber.id)).all()
        ]


def add_subscriber(site: WebSite, email: str, *, confirmed: bool = True, **kwargs: object) -> int:
    with session_scope(site.engine) as session:
        added = store.add_subscriber(
            session,
            email,
            queries=kwargs.pop("queries", ["language model"]),  # type: ignore[arg-type]
            now=site.clock(),
            confirmed=confirmed,
            **kwargs,  # type: ignore[arg-type]
        )
        session.flush()
        assert added.id is not None
        return added.id


def add_topic(site: WebSite, slug: str, query: str, title: str = "", description: str = "") -> None:
    with session_scope(site.engine) as session:
        store.add_topic(
            session, slug, query=query, title=title, description=description, now=site.clock()
        )


def add_papers(site: WebSite, day: date, papers: list[tuple[str, str]]) -> None:
    with session_scope(site.engine) as session:
        dump = Dump(
            sha256=f"{day.isoformat()}-{len(papers)}".ljust(64, "0"),
            file_name=f"{day}.txt",
            dump_date=day,
            ingested_at=site.clock(),
            paper_count=len(papers),
            new_count=len(papers),
        )
        session.add(dump)
        session.flush()
        assert dump.id is not None
        for number, (title, abstract) in enumerate(papers):
            uid = f"{day.isoformat()}-{number}"
            session.add(
                Paper(
                    uid=uid,
                    title_key=uid,
                    title=title,
                    abstract=abstract,
                    dump_id=dump.id,
                    dump_date=day,
                    first_seen=site.clock(),
                    # an instant of its own, as store_dump gives each paper
                    updated_at=site.clock() + timedelta(microseconds=1000 * dump.id + number),
                )
            )


@contextmanager
def local_app(
    config_file: Path, clock: Clock | None = None, **web: object
) -> Iterator[tuple[str, Engine]]:
    """The app on the test config with links on its own http URL and ``web`` changes; the
    file mail backend."""
    port = free_port()
    settings = site_settings(load_settings(config_file), port=port)
    settings = dataclasses.replace(settings, web=dataclasses.replace(settings.web, **web))
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    with running_app(settings, engine, clock=clock, port=port) as base_url:
        yield base_url, engine


def token(site: WebSite, purpose: str, subscriber_id: int, email: str) -> str:
    return make_token(site.settings.link_secret(), purpose, subscriber_id, email)


def path_of(url: str) -> str:
    return httpx.URL(url).raw_path.decode()
