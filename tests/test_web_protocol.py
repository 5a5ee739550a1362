"""The site answers like a site, whatever is asked: error pages in its own style, redirects that
never leave it whatever the Host header says, and HEAD wherever GET works. Over HTTP against
the application running under uvicorn (tests/support/web_server.py)."""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from digestd import jobs, store
from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.tokens import make_token
from digestd.web.security import CONTENT_SECURITY_POLICY
from tests.conftest import SAMPLE
from tests.support.web_pages import add_subscriber, h1, token
from tests.support.web_server import WebSite, running_app, web_site_fixture  # noqa: F401

BASE_URL = "https://digest.example.org"  # the test config's [feeds] base_url
HOSTILE_HOST = "evil.example"
# Paths that are one slash away from a route, and paths that would read as another host if
# a redirect copied them into a Location.
SLASH_PATHS = [
    "/confirm/abc/",
    "/manage/abc//",
    "/unsubscribe/abc/",
    "/api/query-check/?queries=llm",
    "/feeds/index.opml/",
    "/healthz/",
    "/subscribe/",
]
HOSTILE_PATHS = [
    "//evil.example",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example",
    "/\\evil.example/",
    "/\\/evil.example/",
    "/%2F%2Fevil.example",
    "/%2F%2Fevil.example/",
    "/%2f/evil.example/",
    "/%5Cevil.example",
    "/%5Cevil.example/",
    "/%5C%5Cevil.example/",
    "//evil.example/confirm/abc/",
    "/static",
    "/static/",
    "/static//evil.example/",
    "/static/%2F%2Fevil.example/",
    "/feeds//evil.example/",
    "/confirm//evil.example/",
    "/confirm/%2F%2Fevil.example/",
]
# httpx (like a browser) resolves dot segments before sending: these go out as they are over a
# plain socket, as curl --path-as-is would send them.
DOT_PATHS = [
    "//evil.example/..",
    "//evil.example/../",
    "/%2e%2e//evil.example/",
    "/./\\evil.example/",
]


@pytest.fixture
def site(config_file: Path) -> Iterator[tuple[str, Settings, Engine]]:
    """The app on the test config (base_url https://digest.example.org), a topic, its feed and
    a subscriber, served on a loopback port."""
    settings = load_settings(config_file)
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    jobs.run_ingest(settings, engine, [SAMPLE])
    with session_scope(engine) as session:
        store.add_topic(session, "oracle", query="title:oracle", now=jobs.utc_now())
        store.add_subscriber(session, "ada@example.org", queries=["oracle"], now=jobs.utc_now())
    jobs.run_feeds(settings, engine)
    with running_app(settings, engine) as base_url:
        yield base_url, settings, engine
    engine.dispose()


def on_site(location: str) -> bool:
    """Whether a Location stays on the site: a path starting with exactly one "/" and holding
    no backslash, or an absolute URL on the site's base_url."""
    if location.startswith(BASE_URL + "/"):
        return "\\" not in location
    return location.startswith("/") and not location.startswith("//") and "\\" not in location


def raw_request(base_url: str, method: str, target: str, host: str) -> tuple[int, dict[str, str]]:
    """Send one request line exactly as given; the status and headers of the answer."""
    port = int(base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), {k.lower(): v for k, v in headers.items()}


def raw_url(base_url: str, raw_path: str) -> httpx.URL:
    url = httpx.URL(base_url).copy_with(raw_path=raw_path.encode())
    assert url.raw_path == raw_path.encode()  # sent as written
    return url


# Point 3: nothing is built from the Host header


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_no_redirect_leaves_the_site_whatever_the_host_header(
    site: tuple[str, Settings, Engine], method: str
) -> None:
    base_url = site[0]
    locations = {}
    with httpx.Client(headers={"Host": HOSTILE_HOST}, timeout=10) as http:
        for path in SLASH_PATHS + HOSTILE_PATHS:
            response = http.request(method, raw_url(base_url, path))
            assert response.status_code < 500, path
            if 300 <= response.status_code < 400:
                locations[path] = response.headers["location"]
    for path in DOT_PATHS:
        status, headers = raw_request(base_url, method, path, HOSTILE_HOST)
        assert status < 500, path
        if 300 <= status < 400:
            locations[path] = headers["location"]
    assert all(on_site(where) for where in locations.values()), locations
    assert not any(HOSTILE_HOST in where for where in locations.values()), locations
    # The framework's trailing-slash redirects still work, built on base_url.
    assert locations["/confirm/abc/"] == f"{BASE_URL}/confirm/abc"
    assert locations["/manage/abc//"] == f"{BASE_URL}/manage/abc"
    assert locations["/api/query-check/?queries=llm"] == f"{BASE_URL}/api/query-check?queries=llm"
    assert set(locations) == set(SLASH_PATHS)  # nothing else redirects


def test_a_trailing_slash_redirect_leads_to_the_page(web_site: WebSite) -> None:
    # Here base_url is the running site itself: following the redirect reaches the page.
    site = web_site
    subscriber_id = add_subscriber(site, "bob@example.org")
    manage = f"/manage/{token(site, 'manage', subscriber_id, 'bob@example.org')}"
    with httpx.Client(base_url=site.base_url, follow_redirects=True) as http:
        answer = http.get(manage + "/")
    assert [r.status_code for r in answer.history] == [307]
    assert answer.status_code == 200 and h1(answer) == "Your preferences"
    assert str(answer.url) == site.base_url + manage


# Point 4: error pages


def looks_like_the_site(response: httpx.Response, heading: str) -> None:
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert h1(response) == heading
    assert 'href="/static/site.css"' in response.text
    assert '<a class="title-link" href="/">Go to the front page</a>' in response.text
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "detail" not in response.text


def test_404_is_the_sites_page_the_same_for_every_unknown_thing(
    site: tuple[str, Settings, Engine],
) -> None:
    base_url = site[0]
    with httpx.Client(base_url=base_url) as http:
        pages = [
            http.get("/no/such/page"),
            http.get("/feeds/nope.atom"),
            http.get("/feeds/me/forged.atom"),
            http.get("/static/nope.css"),
            http.get("/static"),
            http.get("/%3Cscript%3Ealert(1)%3C/script%3E"),
        ]
    for page in pages:
        assert page.status_code == 404, page.url
        looks_like_the_site(page, "Page not found")
    assert len({page.content for page in pages}) == 1  # nothing of the request shows


def test_405_is_the_sites_page_and_allows_what_the_path_takes(
    site: tuple[str, Settings, Engine],
) -> None:
    base_url = site[0]
    with httpx.Client(base_url=base_url) as http:
        cases = {
            ("PUT", "/confirm/abc"): "GET, HEAD, POST",
            ("DELETE", "/manage/abc"): "GET, HEAD, POST",
            ("POST", "/"): "GET, HEAD",
            ("GET", "/subscribe"): "POST",
            ("HEAD", "/subscribe"): "POST",
            ("POST", "/feeds/index.opml"): "GET, HEAD",
            ("PATCH", "/api/query-check"): "GET, HEAD",
            ("POST", "/static/site.css"): "GET, HEAD",
        }
        for (method, path), allowed in cases.items():
            response = http.request(method, path)
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == allowed, (method, path)
            if method != "HEAD":
                looks_like_the_site(response, "Not possible here")


def test_422_is_the_sites_page(site: tuple[str, Settings, Engine]) -> None:
    base_url = site[0]
    with httpx.Client(base_url=base_url) as http:
        too_long = {"queries": "x" * 100_001, "csrf": "c" * 43}
        responses = [
            http.post("/manage/abc", data=too_long),
            http.post("/subscribe", data={"email": "a" * 100_001}),
            http.post("/unsubscribe/abc", data={"List-Unsubscribe": "x" * 101}),
        ]
    for response in responses:
        assert response.status_code == 422
        looks_like_the_site(response, "This request cannot be read")
        assert "x" * 100 not in response.text and "a" * 100 not in response.text


def test_500_is_the_sites_page_and_tells_nothing(
    config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A real fault: the operator's own front page template uses a name it is never given.
    templates = config_file.parent / "templates"
    (templates / "web").mkdir(parents=True)
    (templates / "web" / "index.html").write_text(
        '{% extends "web/base.html" %}{% block content %}{{ secret_internal_name }}{% endblock %}',
        encoding="utf-8",
    )
    settings = load_settings(config_file)
    settings = dataclasses.replace(
        settings, paths=dataclasses.replace(settings.paths, templates=str(templates))
    )
    assert settings.templates_dir == templates.resolve()
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    with running_app(settings, engine) as base_url, httpx.Client(base_url=base_url) as http:
        broken = http.get("/")
        head = http.head("/")
        fine = http.get("/confirm/abc")
    assert broken.status_code == 500
    looks_like_the_site(broken, "Something went wrong")
    assert "secret_internal_name" not in broken.text and "Traceback" not in broken.text
    assert "undefined" not in broken.text.lower()
    assert head.status_code == 500 and head.content == b""
    assert head.headers["content-length"] == str(len(broken.content))
    assert fine.status_code == 200  # the rest of the site goes on
    logged = [r for r in caplog.records if r.name == "digestd.web" and r.levelname == "ERROR"]
    assert logged and "GET /" in logged[0].getMessage()
    assert logged[0].exc_info is not None  # the operator gets the traceback


# Point 4: HEAD wherever GET works


def get_paths(http: httpx.Client, settings: Settings, engine: Engine) -> list[str]:
    """A concrete path for every GET operation the application describes, plus the static
    files and the description itself."""
    secret = settings.link_secret()
    with session_scope(engine) as session:
        ada = store.subscriber_by_email(session, "ada@example.org")
    values = {
        "/confirm/{token}": make_token(secret, "confirm", ada.id or 0, ada.email),
        "/manage/{token}": make_token(secret, "manage", ada.id or 0, ada.email),
        "/unsubscribe/{token}": make_token(secret, "unsubscribe", ada.id or 0, ada.email),
        "/pause/{token}": make_token(secret, "pause", ada.id or 0, ada.email),
        "/feeds/me/{token}.atom": make_token(secret, "feed", ada.id or 0, ada.email),
        "/digest/{token}": make_token(secret, "digest", ada.id or 0, ada.email, reference="x"),
        "/feeds/{slug}.atom": "oracle",
    }
    paths = []
    for template, operations in http.get("/openapi.json").json()["paths"].items():
        if "get" not in operations:
            continue
        filled = re.sub(r"\{[a-z]+\}", values[template], template) if "{" in template else template
        paths.append(filled)
    extra = ["/openapi.json", "/static/site.css", "/static/site.js", "/static/favicon.svg"]
    return paths + extra + ["/manage/forged", "/no/such/page", "/api/query-check?queries=oracle"]


def test_head_answers_wherever_get_does(site: tuple[str, Settings, Engine]) -> None:
    base_url, settings, engine = site
    with httpx.Client(base_url=base_url) as http:
        http.get("/")  # the CSRF cookie: pages with forms are the same bytes from now on
        paths = get_paths(http, settings, engine)
        assert {"/", "/healthz", "/feeds/index.opml"} <= set(paths)
        assert any(p.startswith("/manage/") and p != "/manage/forged" for p in paths)
        for path in paths:
            got = http.get(path)
            head = http.head(path)
            assert head.status_code == got.status_code, path
            assert head.content == b"", path
            assert head.headers["content-type"] == got.headers["content-type"], path
            assert int(head.headers["content-length"]) == len(got.content), path
            for name in ("content-security-policy", "cache-control", "etag", "allow"):
                assert head.headers.get(name) == got.headers.get(name), (path, name)
        assert http.get("/").status_code == 200
