"""The admin CLI through its entry point: tables, idempotent ingest, quarantine, one-line errors."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from digestd.config import load_settings
from digestd.db import make_engine, session_scope
from digestd.store import signup
from tests.conftest import CliResult

Cli = Callable[..., CliResult]


@pytest.fixture
def ready(cli: Cli) -> Cli:
    assert cli("init").code == 0
    return cli


def test_commands_before_init_say_to_run_init(cli: Cli, tmp_path: Path) -> None:
    result = cli("topic", "list")
    assert not (tmp_path / "data").exists()  # nothing is left behind
    assert result.code == 1
    assert result.err.strip().startswith("error: database") and "does not exist" in result.err
    assert "run digestd init" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_ingest_is_idempotent_and_counts(ready: Cli, sample_path: Path, tmp_path: Path) -> None:
    first = ready("ingest", str(sample_path))
    assert first.code == 0, first.err
    assert "87 new, 0 already known, 0 quarantined" in first.out
    again = ready("ingest", str(sample_path))
    assert "0 new, 87 already known, 0 quarantined" in again.out
    assert "already ingested" in again.out
    # the same papers in a different file are not stored twice either
    copy = tmp_path / "copy.txt"
    copy.write_text(
        sample_path.read_text(encoding="utf-8").replace("Mar 14", "Mar 15"), encoding="utf-8"
    )
    third = ready("ingest", str(copy))
    assert "0 new, 87 already known" in third.out
    assert sample_path.exists() and copy.exists()  # files named on the command line stay put


def test_bad_file_is_quarantined_with_reason_and_nothing_stored(
    ready: Cli, sample_path: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a-good.txt").write_bytes(sample_path.read_bytes())
    (folder / "b-binary.txt").write_bytes(b"\x00\x01\x02binary\x00")
    (folder / "c-empty.txt").write_bytes(b"")
    (folder / "d-paper.pdf").write_bytes(b"%PDF-1.7\n% not a dump\n")
    (folder / ".hidden.txt").write_bytes(b"ignored")
    (folder / "e-copying.txt.part").write_bytes(b"still being written")
    result = ready("ingest", str(folder))
    assert result.code == 2
    assert "87 new, 0 already known, 3 quarantined" in result.out
    quarantine = tmp_path / "data" / "quarantine"
    assert sorted(p.name for p in quarantine.iterdir()) == [
        "b-binary.txt",
        "b-binary.txt.reason",
        "c-empty.txt",
        "c-empty.txt.reason",
        "d-paper.pdf",
        "d-paper.pdf.reason",
    ]
    assert (folder / ".hidden.txt").exists() and (folder / "e-copying.txt.part").exists()
    # the operator's own files stay put: quarantine holds copies
    assert (folder / "b-binary.txt").exists() and (folder / "d-paper.pdf").exists()
    assert "binary" in (quarantine / "b-binary.txt.reason").read_text()
    assert "empty" in (quarantine / "c-empty.txt.reason").read_text()
    assert (quarantine / "b-binary.txt").read_bytes() == b"\x00\x01\x02binary\x00"  # never lost
    listing = ready("match", "model")
    assert "of 87 papers match" in listing.out


def arrived_earlier(*paths: Path) -> None:
    """Date ``paths`` a minute back: dumps that have settled in the inbox."""
    then = time.time() - 60
    for path in paths:
        os.utime(path, (then, then))


def test_inbox_ingest_moves_files_to_processed(
    ready: Cli, sample_path: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "data" / "inbox"
    (inbox / "today.txt").write_bytes(sample_path.read_bytes())
    arrived_earlier(inbox / "today.txt")
    result = ready("ingest")
    assert "87 new" in result.out
    assert not (inbox / "today.txt").exists()
    assert (tmp_path / "data" / "processed" / "today.txt").exists()


@pytest.mark.slow
def test_topics_and_subscribers(ready: Cli, sample_path: Path) -> None:
    ready("ingest", str(sample_path))
    assert (
        ready(
            "topic", "add", "text-to-sql", "--query", '"text-to-sql"', "--title", "Text-to-SQL"
        ).code
        == 0
    )
    dup = ready("topic", "add", "text-to-sql", "--query", "sql")
    assert dup.code == 1 and "already exists" in dup.err
    added = ready(
        "subscriber",
        "add",
        "Ada@Example.org",
        "--name",
        "Ada",
        "--query",
        "oracle",
        "--topic",
        "text-to-sql",
        "--timezone",
        "Europe/Paris",
        "--send-hour",
        "8",
    )
    assert added.code == 0, added.err
    listed = json.loads(ready("subscriber", "list", "--json").out)
    assert listed == [
        {
            "email": "Ada@example.org",
            "name": "Ada",
            "status": "active",
            "frequency": "daily",
            "timezone": "Europe/Paris",
            "send_hour": 8,
            "weekday": "mon",
            "revised_papers": False,
            "language": "en",
            "digest_order": "relevance",
            "paused_until": None,
            "queries": ["oracle"],
            "topics": ["text-to-sql"],
        }
    ]
    assert ready("subscriber", "edit", "ada@example.org", "--revised").code == 0
    assert json.loads(ready("subscriber", "list", "--json").out)[0]["revised_papers"] is True
    assert "sent again when a new version" in ready("subscriber", "show", "ada@example.org").out
    assert ready("subscriber", "edit", "ada@example.org", "--no-revised").code == 0
    assert json.loads(ready("subscriber", "list", "--json").out)[0]["revised_papers"] is False
    assert "followers" in ready("topic", "list").out
    assert ready("subscriber", "pause", "ada@example.org").code == 0
    shown = ready("subscriber", "show", "ada@example.org").out
    assert "paused" in shown and "none while paused" in shown
    assert ready("subscriber", "resume", "ada@example.org").code == 0
    shown = ready("subscriber", "show", "ada@example.org").out
    assert "active" in shown
    assert "due now" in shown or re.search(r"\d{4}-\d\d-\d\d 08:00 Europe/Paris", shown)
    assert ready("subscriber", "remove", "ada@example.org").code == 0
    assert json.loads(ready("subscriber", "list", "--json").out) == []
    assert ready("topic", "remove", "text-to-sql").code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("subscriber", "add", "not-an-address", "--query", "x"),
            "email 'not-an-address' is not valid",
        ),
        (("subscriber", "add", "üser@example.org", "--query", "x"), "non-ASCII before the @"),
        (
            ("subscriber", "add", "a@example.org", "--query", "x", "--timezone", "Mars/Base"),
            "timezone",
        ),
        (
            ("subscriber", "add", "a@example.org", "--query", "x", "--send-hour", "25"),
            "send hour 25",
        ),
        (
            ("subscriber", "add", "a@example.org", "--query", "x", "--frequency", "hourly"),
            "frequency",
        ),
        (("subscriber", "add", "a@example.org", "--query", "(llm"), "position"),
        (("subscriber", "add", "a@example.org", "--query", "-llm"), "position"),
        (("subscriber", "add", "a@example.org", "--topic", "nope"), "no topic 'nope'"),
        (("subscriber", "show", "nobody@example.org"), "no subscriber"),
        (("topic", "add", "Bad Slug", "--query", "x"), "slug"),
        (("match", 'title:"unterminated'), "position"),
        (("ingest", "/no/such/file.txt"), "no such file"),
        (("ingest", "--date", "yesterday", "x"), "--date 'yesterday'"),
    ],
)
def test_bad_input_is_one_line_error_and_nonzero_exit(
    ready: Cli, args: tuple[str, ...], message: str
) -> None:
    result = ready(*args)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.err + result.out


def test_match_explains_why(ready: Cli, sample_path: Path) -> None:
    ready("ingest", str(sample_path))
    result = ready("match", '"text-to-sql"')
    assert result.code == 0
    assert "TrustSQL" in result.out
    assert "text to sql" in result.out
    assert "title" in result.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("subscriber", "add"), "Missing argument"),
        (("send", "--bogus"), "No such option: --bogus"),
        (("nosuch",), "No such command"),
    ],
)
def test_usage_errors_are_one_line_too(cli: Cli, args: tuple[str, ...], message: str) -> None:
    result = cli(*args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


@pytest.mark.slow
def test_a_database_that_is_not_one_is_one_line_without_traceback(
    cli: Cli, config_file: Path, tmp_path: Path
) -> None:
    # a database file that is not a database: the driver's error, mapped to one line (exit 4)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "digestd.db").write_bytes(b"this is not sqlite" * 100)
    result = subprocess.run(
        [sys.executable, "-m", "digestd", "--config", str(config_file), "topic", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 4
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: the database ")
    assert "is damaged or not a database (file is not a database)" in result.stderr
    assert "Traceback" not in result.stderr and "Background on this error" not in result.stderr


def test_subscriber_edit_changes_queries_topics_and_schedule(ready: Cli) -> None:
    assert ready("topic", "add", "sql", "--query", "sql").code == 0
    assert ready("subscriber", "add", "a@example.org", "--query", "llm").code == 0
    dup = ready("subscriber", "add", "A@EXAMPLE.ORG", "--query", "x")
    assert dup.code == 1 and "already exists" in dup.err
    result = ready(
        "subscriber",
        "edit",
        "a@example.org",
        "--add-query",
        '"text to sql"',
        "--follow",
        "sql",
        "--remove-query",
        "llm",
        "--frequency",
        "weekly",
        "--weekday",
        "fri",
        "--send-hour",
        "9",
    )
    assert result.code == 0, result.err
    [row] = json.loads(ready("subscriber", "list", "--json").out)
    assert row["queries"] == ['"text to sql"'] and row["topics"] == ["sql"]
    assert (row["frequency"], row["weekday"], row["send_hour"]) == ("weekly", "fri", 9)
    for args, message in (
        (("--remove-query", "nope"), "has no query 'nope'"),
        (("--unfollow", "nope"), "does not follow topic 'nope'"),
        (("--add-query", "(broken"), "position"),
        (("--weekday", "someday"), "weekday"),
        (("--remove-query", '"text to sql"', "--unfollow", "sql"), "no query and no topic left"),
    ):
        failed = ready("subscriber", "edit", "a@example.org", *args)
        assert failed.code != 0 and message in failed.err, failed.err
    [unchanged] = json.loads(ready("subscriber", "list", "--json").out)
    assert unchanged == row  # a refused edit changes nothing


def test_removing_someones_only_topic_needs_force_and_pauses_them(ready: Cli) -> None:
    assert ready("topic", "add", "llm", "--query", "llm").code == 0
    assert ready("subscriber", "add", "t@example.org", "--topic", "llm").code == 0
    assert ready("subscriber", "add", "q@example.org", "--query", "x", "--topic", "llm").code == 0
    refused = ready("topic", "remove", "llm")
    assert (
        refused.code == 1 and "only subscription of 1 subscriber(s): t@example.org" in refused.err
    )
    assert "llm" in ready("topic", "list").out
    forced = ready("topic", "remove", "llm", "--force")
    assert forced.code == 0 and "paused 1 subscriber(s)" in forced.out
    people = {row["email"]: row for row in json.loads(ready("subscriber", "list", "--json").out)}
    assert people["t@example.org"]["status"] == "paused" and people["t@example.org"]["topics"] == []
    assert people["q@example.org"]["status"] == "active"


@pytest.mark.slow
def test_two_sends_at_once_never_mail_twice(
    ready: Cli, config_file: Path, sample_path: Path, tmp_path: Path
) -> None:
    ready("ingest", str(sample_path))
    for address, query in (("a@example.org", "oracle"), ("b@example.org", "sql")):
        assert ready("subscriber", "add", address, "--query", query).code == 0
    command = [sys.executable, "-m", "digestd", "--config", str(config_file), "send", "--now"]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [(run.wait(timeout=120), run.stderr.read()) for run in runs if run.stderr]
    for code, stderr in results:
        assert code == 0 or (code == 5 and "another digestd send is running" in stderr), stderr
    mails = sorted(p.name.split("-")[1] for p in (tmp_path / "data" / "outbox").glob("*.eml"))
    assert mails == ["a@example.org", "b@example.org"]


def test_one_awkward_inbox_file_does_not_stop_the_others(
    ready: Cli, sample_path: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "data" / "inbox"
    (inbox / ("x" * 240 + ".bin")).write_bytes(b"\x00 not a dump")
    (inbox / "sub").mkdir()
    (inbox / "sub" / "today.txt").write_bytes(sample_path.read_bytes())
    arrived_earlier(inbox / ("x" * 240 + ".bin"), inbox / "sub" / "today.txt")
    result = ready("ingest")
    assert "87 new, 0 already known, 1 quarantined" in result.out, result.out + result.err
    quarantined = [p.name for p in (tmp_path / "data" / "quarantine").iterdir()]
    assert len(quarantined) == 2 and all(len(name) < 140 for name in quarantined)
    assert not any(inbox.rglob("*.txt")) and not any(inbox.glob("*.bin"))


def write_dump(folder: Path, day: str, papers: list[tuple[str, str]]) -> Path:
    path = folder / f"{day.replace(' ', '-')}.txt"
    blocks = "\n\n".join(f"{title}\n\n{abstract}" for title, abstract in papers)
    path.write_text(f"Daily papers\n\n{day}\n\n{blocks}\n", encoding="utf-8")
    return path


def test_match_backtest_counts_caught_papers_per_day(ready: Cli, tmp_path: Path) -> None:
    days = {
        "Mar 10": [
            ("Graph networks at scale", "We study graphs."),
            ("Vision models", "No such word here."),
            ("Message passing", "A graph method."),
        ],
        "Mar 11": [("Speech", "Audio only."), ("Robots", "Control.")],
        "Mar 12": [
            ("Graph transformers", "Attention."),
            ("Knowledge graphs", "Entities."),
            ("Protein folding", "Structures."),
            ("Graph sampling", "Subgraphs."),
        ],
    }
    for day, papers in days.items():
        result = ready("ingest", str(write_dump(tmp_path, day, papers)), "--date", "2025-03-20")
        assert result.code == 0, result.err
    result = ready("match", "graph", "--backtest")
    assert result.code == 0, result.err
    rows = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:5]]
        for line in result.out.splitlines()
        if line.startswith("│ 2025-")
    }
    assert rows == {
        "2025-03-10": ["3", "2", "67%"],
        "2025-03-11": ["2", "0", "0%"],
        "2025-03-12": ["4", "3", "75%"],
    }
    summary = " ".join(result.out.split())
    assert "caught 5 of 9 papers over 3 days with papers" in summary
    assert "mean 1.7, median 2, most 3 (2025-03-12); days with none: 1" in summary
    recent = ready("match", "graph", "--backtest", "--days", "2")
    assert "caught 3 of 6 papers over 2 days" in " ".join(recent.out.split())
    assert "2025-03-10" not in recent.out


def test_match_backtest_on_an_empty_store_says_so(ready: Cli) -> None:
    result = ready("match", "graph", "--backtest")
    assert result.code == 0
    assert "no papers are stored yet" in result.out


def test_match_backtest_refuses_zero_days(ready: Cli) -> None:
    result = ready("match", "graph", "--backtest", "--days", "0")
    assert result.code == 2
    assert "--days" in result.err


def test_topic_description_reaches_the_list_the_feed_and_can_be_edited(
    cli: Cli, sample_path: Path, tmp_path: Path
) -> None:
    assert cli("init").code == 0
    assert cli("ingest", str(sample_path)).code == 0
    added = cli("topic", "add", "sql", "-q", "sql", "-d", "Text-to-SQL & <databases>")
    assert added.code == 0
    assert "Text-to-SQL & <databases>" in cli("topic", "list").out
    assert cli("feeds").code == 0
    feed = feedparser.parse((tmp_path / "data" / "feeds" / "sql.atom").read_bytes())
    assert html.unescape(feed.feed.subtitle) == "Text-to-SQL & <databases>"
    edited = cli("topic", "edit", "sql", "--description", "Asking databases in words")
    assert edited.code == 0 and "feeds rebuilt" in edited.out
    feed = feedparser.parse((tmp_path / "data" / "feeds" / "sql.atom").read_bytes())
    assert feed.feed.subtitle == "Asking databases in words"
    refused = cli("topic", "edit", "sql")
    assert refused.code == 1 and "give --title or --description" in refused.err
    assert cli("topic", "edit", "nope", "--title", "x").code == 1


def test_unexpected_failure_is_one_line_exit_70_without_traceback(
    ready: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something digestd did not foresee")

    monkeypatch.setattr("digestd.store.topics", broken)
    result = ready("topic", "list")
    assert result.code == 70
    assert result.err == (
        "error: unexpected RuntimeError: something digestd did not foresee "
        "(run with --debug for details)\n"
    )


def test_readme_lists_exactly_the_exit_codes_digestd_uses() -> None:
    from digestd.cli import common

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    listed = {
        int(line.split("|")[1]) for line in section.splitlines() if line[:3].strip("| ").isdigit()
    }
    used = {value for name, value in vars(common).items() if name.startswith("EXIT_")}
    assert listed == used == {0, 1, 2, 3, 4, 5, 70, 130}


def test_purge_deletes_expired_sign_ups_and_keeps_the_rest(ready: Cli, config_file: Path) -> None:
    engine = make_engine(load_settings(config_file, environ={}).database_url)
    wants = signup.Preferences(queries=["oracle"], topic_slugs=[])
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        # Past the 48 hours a confirmation link works: the request and the pending subscriber go.
        for address, hours_ago in (("stale@example.org", 49), ("fresh@example.org", 1)):
            signup.sign_up(
                session,
                address,
                wants,
                now=now - timedelta(hours=hours_ago),
                resend_after=timedelta(minutes=60),
            )
    assert ready("subscriber", "add", "admin@example.org", "--query", "oracle").code == 0

    purged = ready("purge")
    assert purged.code == 0, purged.err
    assert "stale@example.org" in purged.out and "fresh@example.org" not in purged.out
    assert "1 expired sign-up requests, 1 never-confirmed subscribers deleted" in purged.out
    listed = {row["email"] for row in json.loads(ready("subscriber", "list", "--json").out)}
    assert listed == {"fresh@example.org", "admin@example.org"}

    again = ready("purge")
    assert again.code == 0 and "0 expired sign-up requests, 0 never-confirmed" in again.out
