"""schemathesis against the web application's own OpenAPI: no request makes it answer 5xx.

Every operation of ``/openapi.json`` gets a bounded number of generated requests, in process
through ASGI, against a database holding the sample papers, two topics and a confirmed
subscriber. To reach past the first checks, half of the generated tokens are replaced by valid
ones for the path's purpose, and half of the form posts carry a CSRF field matching their cookie.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Verbosity, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error

from digestd import jobs, store
from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.tokens import make_token
from digestd.web import create_app
from tests.conftest import SAMPLE

EXAMPLES = 40  # per operation, valid and invalid requests together: well under a minute in all
CSRF = "fuzz-csrf-0123456789abcdefghijklmnopqrstuvwxyz"
# The purpose of the token in each path that carries one.
PURPOSES = {
    "/confirm/": "confirm",
    "/manage/": "manage",
    "/unsubscribe/": "unsubscribe",
    "/feeds/me/": "feed",
}
# Valid values for the fields of the forms (the contract's names), for reach_deeper.
VALID_FORMS: dict[str, dict[str, object]] = {
    "/subscribe": {
        "email": "fuzz@example.org",
        "queries": "oracle",
        "topics": ["oracle"],
        "frequency": "daily",
        "send_hour": "7",
        "timezone": "Europe/Paris",
        "weekday": "mon",
    },
    "/manage/{token}": {
        "queries": "sql\nllm",
        "topics": ["text-to-sql"],
        "frequency": "weekly",
        "send_hour": "23",
        "timezone": "UTC",
        "weekday": "fri",
        "paused": "",
    },
}


@dataclass(frozen=True)
class FuzzSite:
    """The application under test, and a confirmed subscriber whose tokens the fuzzer may use."""

    app: FastAPI
    settings: Settings
    subscriber_id: int
    email: str

    def token(self, purpose: str) -> str:
        secret = self.settings.link_secret()
        return make_token(secret, purpose, self.subscriber_id, self.email)


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzSite]:
    folder = tmp_path_factory.mktemp("fuzz")
    config = folder / "config.toml"
    config.write_text(
        f"""
[paths]
data_dir = "{folder / "data"}"

[smtp]
from_address = "papers@digest.example.org"

[feeds]
base_url = "https://digest.example.org"

[web]
subscribe_per_hour = 100000
""",
        encoding="utf-8",
    )
    settings = load_settings(config, environ={})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    jobs.run_ingest(settings, engine, [SAMPLE])
    with session_scope(engine) as session:
        now = jobs.utc_now()
        store.add_topic(session, "text-to-sql", query='"text-to-sql"', title="Text-to-SQL", now=now)
        store.add_topic(session, "oracle", query="title:oracle", title="Oracles", now=now)
        subscriber = store.add_subscriber(
            session, "ada@example.org", queries=["oracle"], topic_slugs=["oracle"], now=now
        )
    jobs.run_feeds(settings, engine)
    assert subscriber.id is not None
    yield FuzzSite(create_app(settings, engine), settings, subscriber.id, subscriber.email)
    engine.dispose()


def reach_deeper(case: schemathesis.Case, site: FuzzSite) -> dict[str, str]:
    """Make every other generated request get past the first checks: a valid token for the
    path's purpose, a topic that exists, a CSRF field matching the cookie, valid form fields
    but one (kept as generated); returns the cookies to send.

    Which requests are changed depends only on what was generated, so a failure replays."""
    params = case.path_parameters or {}
    token, slug = params.get("token"), params.get("slug")
    path = case.operation.path
    if isinstance(token, str) and len(token) % 2 == 0:
        purpose = next((p for prefix, p in PURPOSES.items() if path.startswith(prefix)), None)
        if purpose is not None:
            params["token"] = site.token(purpose)
    if isinstance(slug, str) and len(slug) % 2 == 0:
        params["slug"] = "oracle"
    body = case.body
    if not isinstance(body, dict):
        return {}
    coin = len(repr(sorted(body.items(), key=str)))
    valid = VALID_FORMS.get(path, {})
    if valid and coin % 2 == 0:
        kept = list(valid)[coin // 2 % len(valid)]
        body.update({name: value for name, value in valid.items() if name != kept})
    if not (isinstance(body.get("csrf"), str) and len(body["csrf"]) % 2 == 1):
        body["csrf"] = CSRF
    return {"digestd_csrf": CSRF}


def fuzz(operation: APIOperation, site: FuzzSite) -> str:
    """Run generated requests (valid and invalid ones) against one operation; returns the
    smallest request that got a server error and what came back, or "" if none did."""
    last: list[tuple[schemathesis.Case, dict[str, str]]] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # one inner test per operation: replays would cross operations
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(
        st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
    )
    def requests_to(case: schemathesis.Case) -> None:
        cookies = reach_deeper(case, site)
        last[:] = [(case, cookies)]
        case.call_and_validate(cookies=cookies, checks=[not_a_server_error])

    try:
        requests_to()
    # schemathesis reports failed checks as an exception group of its own (not an Exception);
    # an exception in the app reaches here as itself.
    except (Exception, BaseExceptionGroup) as exc:
        outcome = f"{type(exc).__name__}: {exc}"
        if not last:
            return f"{operation.label}\n  outcome: {outcome}"
        case, cookies = last[0]  # the last case run is the smallest failing one
        request = case.as_curl_command() + "".join(f" -b {k}={v}" for k, v in cookies.items())
        return f"{operation.label}\n  request: {request}\n  outcome: {outcome}"[:4000]
    return ""


@pytest.mark.slow
def test_no_request_makes_a_server_error(fuzz_site: FuzzSite) -> None:
    # The schema is loaded here rather than with schemathesis' pytest loaders: the app needs
    # the seeded database of a fixture, and the lazy loader (schemathesis.pytest.from_fixture)
    # fails on pytest 9.2 ('Function' object has no attribute '_nodeid').
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_site.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the OpenAPI document lists no operation"
    failures = [found for operation in operations if (found := fuzz(operation, fuzz_site))]
    assert not failures, "server errors:\n" + "\n".join(failures)
