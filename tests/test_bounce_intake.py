"""Bounce intake: DSN and complaint fixtures recorded against the right subscriber, once."""

from __future__ import annotations

import json
import mailbox
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digestd import store
from digestd.cli.common import out
from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate, session_scope, sqlite_file
from digestd.errors import StorageError
from digestd.jobs.bounce_job import run_bounces
from digestd.models import Bounce, Delivery, Subscriber
from digestd.tokens import make_token, verp_address
from tests.conftest import CliResult

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HARD, SOFT, COMPLAINT = (FIXTURES / f"{n}.eml" for n in ("dsn_hard", "dsn_soft", "arf_complaint"))
NOW = datetime(2024, 3, 12, 7, 0, tzinfo=UTC)


@pytest.fixture
def ready(config_file: Path) -> tuple[Settings, Engine]:
    settings = load_settings(config_file, environ={})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    return settings, engine


def flat(result: CliResult) -> str:
    """The output with line wrapping undone."""
    return " ".join(result.out.split())


def add(engine: Engine, address: str, message_id: str = "") -> int:
    """A subscriber, with a sent digest carrying ``message_id`` when given."""
    with session_scope(engine) as session:
        subscriber = store.add_subscriber(session, address, queries=["oracle"], now=NOW)
        assert subscriber.id is not None
        if message_id:
            session.add(
                Delivery(
                    subscriber_id=subscriber.id,
                    digest_key="2024-03-12",
                    status="sent",
                    message_id=message_id,
                    paper_count=1,
                    created_at=NOW,
                )
            )
        return subscriber.id


def state(engine: Engine, address: str) -> tuple[str | None, list[tuple[str, str]]]:
    """A subscriber's suppression reason and their (kind, status) bounces."""
    with session_scope(engine) as session:
        subscriber = store.subscriber_by_email(session, address)
        bounces = store.bounces_of(session, subscriber.id or 0)
        return subscriber.suppressed_reason or None, [(b.kind, b.status) for b in bounces]


def test_hard_soft_and_complaint_fixtures_are_recorded_against_their_subscribers(
    ready: tuple[Settings, Engine], cli: Callable[..., CliResult]
) -> None:
    _settings, engine = ready
    add(engine, "alice@example.org", "<a1b2c3d4e5f60718@digest.example.org>")
    add(engine, "bob@example.org", "<0f1e2d3c4b5a6978@digest.example.org>")
    add(engine, "carol@example.org", "<99aa88bb77cc66dd@digest.example.org>")
    add(engine, "dave@example.org")
    for fixture in (HARD, SOFT, COMPLAINT):
        assert cli("bounces", str(fixture)).code == 0
    alice, bob, carol, dave = (
        state(engine, f"{n}@example.org") for n in ("alice", "bob", "carol", "dave")
    )
    assert alice[0] is not None and "5.1.1" in alice[0] and alice[1] == [("hard", "5.1.1")]
    assert bob == (None, [("soft", "4.2.2")])  # a soft bounce does not suppress
    assert (
        carol[0] is not None
        and carol[0].startswith("complaint")
        and carol[1][0][0] == ("complaint")
    )
    assert dave == (None, [])
    with session_scope(engine) as session:
        hard = session.exec(select(Bounce).where(Bounce.kind == "hard")).one()
        delivery = store.delivery_by_message_id(session, "<a1b2c3d4e5f60718@digest.example.org>")
        assert delivery is not None and hard.delivery_id == delivery.id
    shown = cli("subscriber", "show", "alice@example.org")
    assert "suppressed since" in shown.out and "5.1.1" in shown.out


def test_reading_the_same_reports_again_records_nothing_more(
    ready: tuple[Settings, Engine], cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    _settings, engine = ready
    add(engine, "alice@example.org", "<a1b2c3d4e5f60718@digest.example.org>")
    add(engine, "bob@example.org")
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for fixture in (HARD, SOFT):
        box.add(fixture.read_bytes())
    box.flush()
    first = cli("bounces", str(tmp_path / "bounces.mbox"))
    assert first.code == 0 and "1 hard, 1 soft" in flat(first) and "1 suppressed" in flat(first)
    again = cli("bounces", str(tmp_path / "bounces.mbox"))
    assert again.code == 0 and "2 recorded before" in flat(again) and "0 suppressed" in flat(again)
    with session_scope(engine) as session:
        assert len(session.exec(select(Bounce)).all()) == 2


def test_message_id_finds_a_subscriber_whose_mail_was_forwarded(
    ready: tuple[Settings, Engine], cli: Callable[..., CliResult]
) -> None:
    _settings, engine = ready
    # The report names the final (forwarded-to) address; our Message-ID names Ann's digest.
    add(engine, "ann@example.net", "<a1b2c3d4e5f60718@digest.example.org>")
    result = cli("bounces", str(HARD))
    assert result.code == 0 and "ann@example.net" in flat(result)
    assert state(engine, "ann@example.net")[1] == [("hard", "5.1.1")]


def test_verp_address_finds_the_subscriber_first(
    ready: tuple[Settings, Engine], config_file: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    settings, engine = ready
    config_file.write_text(
        config_file.read_text() + '\n[delivery]\nbounce_address = "bounces@digest.example.org"\n'
    )
    add(engine, "alice@example.org")
    eve = add(engine, "eve@example.org")
    address = verp_address("bounces@digest.example.org", eve, settings.link_secret())
    report = HARD.read_bytes().replace(
        b"Delivered-To: papers@digest.example.org", b"Delivered-To: " + address.encode()
    )
    (tmp_path / "verp.eml").write_bytes(report)
    assert cli("bounces", str(tmp_path / "verp.eml")).code == 0
    assert state(engine, "eve@example.org")[1] == [("hard", "5.1.1")]
    assert state(engine, "alice@example.org") == (None, [])


def test_maildir_reports_are_marked_read_and_unknown_ones_are_counted(
    ready: tuple[Settings, Engine], cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    _settings, engine = ready
    add(engine, "bob@example.org")
    box = mailbox.Maildir(tmp_path / "Maildir")
    box.add(SOFT.read_bytes())
    box.add(HARD.read_bytes())  # alice is nobody here
    box.add(b"From: someone@example.com\r\nSubject: hello\r\n\r\nhi\r\n")
    result = cli("bounces", str(tmp_path / "Maildir"))
    assert result.code == 0 and "1 soft" in flat(result) and "1 unmatched" in flat(result)
    assert list((tmp_path / "Maildir" / "new").iterdir()) == []
    again = cli("bounces", str(tmp_path / "Maildir"))
    assert "0 hard, 0 soft" in flat(again)


def test_mailed_unsubscribe_request_with_a_valid_token_suppresses(
    ready: tuple[Settings, Engine], cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    settings, engine = ready
    ann = add(engine, "ann@example.org")
    token = make_token(settings.link_secret(), "unsubscribe", ann, "ann@example.org")
    forged = make_token("another secret", "unsubscribe", ann, "ann@example.org")
    (tmp_path / "forged.eml").write_text(f"From: x@example.com\nSubject: unsubscribe {forged}\n\n")
    (tmp_path / "real.eml").write_text(f"From: ann@example.org\nSubject: unsubscribe {token}\n\n")
    assert "1 unmatched" in flat(cli("bounces", str(tmp_path / "forged.eml")))
    assert state(engine, "ann@example.org")[0] is None
    assert "1 unsubscribes" in flat(cli("bounces", str(tmp_path / "real.eml")))
    assert state(engine, "ann@example.org")[0] == "unsubscribed (mail)"


def test_missing_bounce_path_is_a_one_line_error(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    assert cli("init").code == 0
    result = cli("bounces", str(tmp_path / "nowhere"))
    assert result.code == 1 and "nowhere" in result.err and len(result.err.splitlines()) == 1


def test_suppression_can_be_lifted(
    ready: tuple[Settings, Engine], cli: Callable[..., CliResult]
) -> None:
    _settings, engine = ready
    add(engine, "alice@example.org", "<a1b2c3d4e5f60718@digest.example.org>")
    cli("bounces", str(HARD))
    assert state(engine, "alice@example.org")[0] is not None
    listed = json.loads(cli("subscriber", "list", "--json").out)
    assert [row["status"] for row in listed] == ["suppressed"]
    assert cli("subscriber", "unsuppress", "alice@example.org").code == 0
    listed = json.loads(cli("subscriber", "list", "--json").out)
    assert [row["status"] for row in listed] == ["active"]
    assert state(engine, "alice@example.org")[0] is None
    with session_scope(engine) as session:
        subscriber = session.exec(select(Subscriber)).one()
        assert subscriber.lifted_at is not None
    refused = cli("subscriber", "unsuppress", "alice@example.org")
    assert refused.code == 1 and "not suppressed" in refused.err


def test_a_report_matched_by_address_alone_never_suppresses(
    ready: tuple[Settings, Engine], cli: Callable[..., CliResult]
) -> None:
    _settings, engine = ready
    add(engine, "alice@example.org")  # nothing we sent carries the report's Message-ID
    result = cli("bounces", str(HARD))
    assert result.code == 0 and "unverified" in flat(result) and "0 suppressed" in flat(result)
    assert state(engine, "alice@example.org") == (None, [("hard", "5.1.1")])


def test_each_recipient_of_a_multi_recipient_report_is_recorded(
    ready: tuple[Settings, Engine], cli: Callable[..., CliResult]
) -> None:
    _settings, engine = ready
    add(engine, "erin@example.net")
    add(engine, "frank@example.net")
    result = cli("bounces", str(FIXTURES / "dsn_exim_multi.eml"))
    assert "2 hard" in flat(result)
    assert state(engine, "erin@example.net")[1] == [("hard", "5.1.1")]
    assert state(engine, "frank@example.net")[1] == [("hard", "5.2.2")]
    assert "2 recorded before" in flat(cli("bounces", str(FIXTURES / "dsn_exim_multi.eml")))


def test_a_relay_refusing_our_message_never_counts_against_the_subscriber(
    ready: tuple[Settings, Engine], cli: Callable[..., CliResult]
) -> None:
    _settings, engine = ready
    add(engine, "grace@gmail.com", "<7d8e9fa0b1c2d3e4@digest.example.org>")
    result = cli("bounces", str(FIXTURES / "dsn_policy.eml"))
    assert result.code == 0
    assert "0 hard, 0 soft, 1 refused (not the recipient's)" in flat(result)
    assert "0 suppressed" in flat(result)
    assert state(engine, "grace@gmail.com") == (None, [("refused", "5.7.26")])
    shown = cli("subscriber", "show", "grace@gmail.com")
    assert "refused" in shown.out and "5.7.26" in flat(shown)
    # The digest the relay took did not arrive: failed, and not the recipient's fault.
    with session_scope(engine) as session:
        (delivery,) = session.exec(select(Delivery)).all()
    assert (delivery.status, delivery.fault) == ("failed", "sender")
    assert delivery.reply.startswith("bounce report: 5.7.26 ")
    stats = flat(cli("stats"))
    assert "failed: refused for our message or server (not the recipient's) │ 1" in stats
    # Reading the report again changes nothing.
    assert "recorded before" in flat(cli("bounces", str(FIXTURES / "dsn_policy.eml")))
    assert "failed: refused for our message or server (not the recipient's) │ 1" in flat(
        cli("stats")
    )


def test_a_reported_hard_bounce_fails_the_digest_it_answers(
    ready: tuple[Settings, Engine], cli: Callable[..., CliResult]
) -> None:
    _settings, engine = ready
    add(engine, "alice@example.org", "<a1b2c3d4e5f60718@digest.example.org>")
    assert cli("bounces", str(FIXTURES / "dsn_hard.eml")).code == 0
    with session_scope(engine) as session:
        (delivery,) = session.exec(select(Delivery)).all()
    assert (delivery.status, delivery.fault) == ("failed", "recipient")
    assert "failed: the recipient's address (hard bounce) │ 1" in flat(cli("stats"))


# The plain-text fixtures came to VERP addresses signed with this secret for subscribers 1-4.
PLAIN_SECRET = "fixture-secret-for-plain-bounces"
PLAIN = ("plain_qmail", "plain_exim", "vacation_reply", "plain_exim_delay", "vacation_sieve")


@pytest.fixture
def verp_config(config_file: Path) -> Path:
    config_file.write_text(
        config_file.read_text()
        + '\n[delivery]\nbounce_address = "bounces@digest.example.org"\n'
        + f'\n[digest]\nsecret = "{PLAIN_SECRET}"\n'
    )
    return config_file


def test_plain_text_bounces_at_a_signed_verp_address_are_bounces(
    verp_config: Path,
    cli: Callable[..., CliResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(out, "width", 400)  # one table row per line
    settings = load_settings(verp_config, environ={})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    ids = [
        add(engine, "ada@example.net", "<qmail-digest-1@digest.example.org>"),
        add(engine, "bea@example.net"),
        add(engine, "cleo@example.net"),
        add(engine, "dora@example.net"),
    ]
    assert ids == [1, 2, 3, 4]
    folder = tmp_path / "bounces"
    folder.mkdir()
    for number, name in enumerate(PLAIN):
        (folder / f"{number}-{name}.eml").write_bytes((FIXTURES / f"{name}.eml").read_bytes())
    result = cli("bounces", str(folder))
    assert result.code == 0, result.err
    summary = flat(result)
    assert "1 hard, 1 soft, 1 refused (not the recipient's), 0 complaints" in summary
    assert "0 unmatched" in summary and "1 suppressed" in summary
    kinds = {
        name: line.split("│")[2].strip()
        for line in result.out.splitlines()
        for name in PLAIN
        if f"-{name}.eml" in line and line.count("│") == 5
    }
    assert kinds == {
        "plain_qmail": "hard",
        "plain_exim": "refused",
        "plain_exim_delay": "soft",
        "vacation_reply": "not a bounce",
        "vacation_sieve": "not a bounce",
    }
    ada, bea, cleo, dora = (
        state(engine, f"{n}@example.net") for n in ("ada", "bea", "cleo", "dora")
    )
    assert ada[0] is not None and ada[1] == [("hard", "5.1.1")]
    assert bea == (None, [("refused", "5.7.1")])
    assert cleo == (None, [])  # on holiday, not gone
    assert dora == (None, [("soft", "4.7.1")])
    with session_scope(engine) as session:
        hard = session.exec(select(Bounce).where(Bounce.kind == "hard")).one()
        delivery = store.delivery_by_message_id(session, "<qmail-digest-1@digest.example.org>")
        assert delivery is not None and hard.delivery_id == delivery.id
        # The notice's own words are the reason, its returned copy is not.
        assert hard.reason.startswith("<ada@example.net>: 192.0.2.25 does not like recipient.")
        assert "User unknown in local recipient table" in hard.reason
    shown = cli("subscriber", "show", "ada@example.net")
    assert "suppressed since" in shown.out and "does not like recipient" in flat(shown)
    again = cli("bounces", str(folder))
    assert "3 recorded before" in flat(again) and "0 suppressed" in flat(again)


def test_a_plain_text_bounce_without_a_valid_verp_address_changes_nothing(
    verp_config: Path,
    cli: Callable[..., CliResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(out, "width", 400)
    settings = load_settings(verp_config, environ={})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    # Ada's address and our Message-ID are in the notice: neither proves it answers our mail.
    add(engine, "ada@example.net", "<qmail-digest-1@digest.example.org>")
    qmail = (FIXTURES / "plain_qmail.eml").read_bytes()
    forged = verp_address("bounces@digest.example.org", 1, "another secret").encode()
    (tmp_path / "forged.eml").write_bytes(
        qmail.replace(b"bounces+s1-aazlqglvdg", forged.split(b"@")[0])
    )
    (tmp_path / "plain.eml").write_bytes(qmail.replace(b"bounces+s1-aazlqglvdg@", b"bounces@"))
    for name in ("forged.eml", "plain.eml"):
        result = cli("bounces", str(tmp_path / name))
        assert result.code == 0 and "1 unmatched" in flat(result), name
        assert "not to a signed VERP address" in flat(result)
    assert state(engine, "ada@example.net") == (None, [])


def nested_message(depth: int = 3000) -> bytes:
    """A message of messages nested deeper than the email package's parser can recurse."""
    return (
        b"From: someone@example.com\r\nSubject: hello\r\nMessage-ID: <nested@example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        + b"Content-Type: message/rfc822\r\n\r\n" * depth
        + b"Content-Type: text/plain\r\n\r\nhi\r\n"
    )


def test_a_message_that_cannot_be_parsed_is_logged_and_the_others_are_recorded(
    ready: tuple[Settings, Engine],
    cli: Callable[..., CliResult],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _settings, engine = ready
    add(engine, "alice@example.org", "<a1b2c3d4e5f60718@digest.example.org>")
    add(engine, "bob@example.org")
    maildir = tmp_path / "Maildir"
    for folder in ("new", "cur", "tmp"):
        (maildir / folder).mkdir(parents=True)
    (maildir / "new" / "1-hard").write_bytes(HARD.read_bytes())
    (maildir / "new" / "2-nested").write_bytes(nested_message())
    (maildir / "new" / "3-soft").write_bytes(SOFT.read_bytes())
    result = cli("bounces", str(maildir))
    assert result.code == 0, result.err
    assert "1 hard, 1 soft" in flat(result) and "1 could not be read" in flat(result)
    assert state(engine, "alice@example.org")[1] == [("hard", "5.1.1")]
    assert state(engine, "bob@example.org") == (None, [("soft", "4.2.2")])
    (logged,) = [r for r in caplog.records if "2-nested" in r.getMessage()]
    assert logged.levelname == "ERROR" and "<nested@example.com>" in logged.getMessage()
    # Each is marked read: the bad one would fail the same way on every pass.
    assert list((maildir / "new").iterdir()) == []
    assert "0 hard, 0 soft" in flat(cli("bounces", str(maildir)))


def test_a_bad_message_in_an_mbox_is_counted_between_good_ones(
    ready: tuple[Settings, Engine], tmp_path: Path
) -> None:
    settings, engine = ready
    add(engine, "alice@example.org", "<a1b2c3d4e5f60718@digest.example.org>")
    add(engine, "bob@example.org")
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for data in (HARD.read_bytes(), nested_message(), SOFT.read_bytes()):
        box.add(data)
    box.flush()
    report = run_bounces(settings, engine, tmp_path / "bounces.mbox", now=NOW)
    assert [o.kind for o in report.outcomes] == ["hard", "error", "soft"]
    bad = report.outcomes[1]
    assert bad.source.endswith("bounces.mbox#2") and "<nested@example.com>" in bad.detail
    assert report.count("error") == 1 and report.stopped is None
    assert report.suppressed == ["alice@example.org"]


def test_a_database_that_cannot_be_written_stops_the_pass(
    ready: tuple[Settings, Engine], cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    settings, engine = ready
    add(engine, "alice@example.org", "<a1b2c3d4e5f60718@digest.example.org>")
    add(engine, "bob@example.org")
    engine.dispose()
    database = sqlite_file(settings.database_url)
    read_only = make_engine(f"sqlite:///file:{database}?mode=ro&uri=true")
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for fixture in (HARD, SOFT):
        box.add(fixture.read_bytes())
    box.flush()
    report = run_bounces(settings, read_only, tmp_path / "bounces.mbox", now=NOW)
    assert isinstance(report.stopped, StorageError) and report.outcomes == []
    assert state(engine, "alice@example.org") == (None, [])
