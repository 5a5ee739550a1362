"""End to end: the sample ingested, subscribers added, digests sent through a real SMTP server on
loopback, every message parsed back; a second send sends nothing; feeds parse with stable ids."""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import feedparser
import pytest

from tests.conftest import CliResult, SmtpServer

Cli = Callable[..., CliResult]


def use_smtp(config_file: Path, server: SmtpServer) -> None:
    text = config_file.read_text(encoding="utf-8")
    text = text.replace("[smtp]\n", f'[smtp]\nhost = "{server.host}"\nport = {server.port}\n')
    config_file.write_text(text + '\n[delivery]\nbackend = "smtp"\n\n[digest]\nmax_papers = 5\n')


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content())


def setup_pipeline(cli: Cli, sample_path: Path) -> None:
    assert cli("init").code == 0
    assert cli("ingest", str(sample_path)).code == 0
    assert (
        cli(
            "topic", "add", "text-to-sql", "--query", '"text-to-sql"', "--title", "Text-to-SQL"
        ).code
        == 0
    )
    assert cli("topic", "add", "oracle", "--query", "title:oracle", "--title", "Oracles").code == 0
    assert (
        cli(
            "subscriber", "add", "ada@example.org", "--name", "Ada Lövelace", "--query", "oracle"
        ).code
        == 0
    )
    assert (
        cli(
            "subscriber",
            "add",
            "grace@example.org",
            "--query",
            '"code generation"',
            "--topic",
            "text-to-sql",
        ).code
        == 0
    )
    assert cli("subscriber", "add", "alan@example.org", "--query", '"protein folding"').code == 0
    assert cli("subscriber", "add", "paused@example.org", "--query", "model").code == 0
    assert cli("subscriber", "pause", "paused@example.org").code == 0


@pytest.mark.slow
def test_digests_over_smtp_exactly_once(
    cli: Cli, config_file: Path, sample_path: Path, smtp_server: SmtpServer
) -> None:
    use_smtp(config_file, smtp_server)
    setup_pipeline(cli, sample_path)

    dry = cli("send", "--now", "--dry-run")
    assert dry.code == 0 and "would be sent" in dry.out
    assert smtp_server.handler.envelopes == []

    result = cli("send", "--now")
    assert result.code == 0, result.err
    messages = smtp_server.handler.messages()
    assert sorted(e.rcpt_tos[0] for e in smtp_server.handler.envelopes) == [
        "ada@example.org",
        "grace@example.org",
    ]
    assert smtp_server.handler.connections == 1  # one reused connection
    by_rcpt = {m["To"].addresses[0].addr_spec: m for m in messages}

    ada = by_rcpt["ada@example.org"]
    assert ada.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in ada.iter_parts()] == ["text/plain", "text/html"]
    assert ada["To"].addresses[0].display_name == "Ada Lövelace"
    assert ada["From"].addresses[0].addr_spec == "papers@digest.example.org"
    for header in ("Date", "Message-ID", "List-Id", "List-Unsubscribe"):
        assert len(ada.get_all(header) or []) == 1, header
    assert re.fullmatch(
        r"<https://digest\.example\.org/unsubscribe/([\w.-]+)>, "
        r"<mailto:papers@digest\.example\.org\?subject=unsubscribe%20\1>",
        str(ada["List-Unsubscribe"]),
    )
    assert ada["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "digest.example.org" in str(ada["List-Id"])
    # ranked by score and capped at max_papers = 5, with a line for the rest
    subject = str(ada["Subject"])
    more = int(re.search(r"(\d+) more", body(ada, "plain"))[1])  # type: ignore[index]
    # the top title, then how many more: 5 shown, the rest counted
    assert subject.endswith(f" and {4 + more} more papers — Mar 14") and len(subject) <= 78
    html, text = body(ada, "html"), body(ada, "plain")
    titles = re.findall(r"^\s*\d+\. (.+)$", text, flags=re.MULTILINE)
    assert len(titles) >= 5
    # title hits rank above abstract hits: the three papers with Oracle in the title come first
    assert all("oracle" in t.lower() for t in titles[:3]), titles
    assert not any("oracle" in t.lower() for t in titles[3:]), titles
    assert 'class="hit"' in html and "Oracle</span>" in html.replace("ORacle", "Oracle")
    assert "more" in text and "more" in html
    assert "your query “oracle”" in text

    grace = by_rcpt["grace@example.org"]
    grace_text = body(grace, "plain")
    assert "TrustSQL" in grace_text
    assert "Text-to-SQL" in grace_text  # the followed topic is named as a reason

    # a second run sends nothing; a later dump with nothing new sends nothing either
    again = cli("send", "--now")
    assert again.code == 0
    assert len(smtp_server.handler.envelopes) == 2
    assert "with nothing new" in again.out
    shown = cli("subscriber", "show", "ada@example.org")
    assert "sent" in shown.out


@pytest.mark.slow
def test_refused_recipient_is_recorded_and_does_not_stop_the_others(
    cli: Cli, config_file: Path, sample_path: Path, smtp_server: SmtpServer
) -> None:
    use_smtp(config_file, smtp_server)
    setup_pipeline(cli, sample_path)
    smtp_server.handler.refuse.add("ada@example.org")
    result = cli("send", "--now")
    assert result.code == 3
    assert [e.rcpt_tos for e in smtp_server.handler.envelopes] == [["grace@example.org"]]
    shown = cli("subscriber", "show", "ada@example.org")
    assert "failed" in shown.out and "550" in shown.out and "suppressed since" in shown.out
    # A 550 is a hard bounce: Ada is no longer mailed, even once the server would take it.
    smtp_server.handler.refuse.clear()
    before = len(smtp_server.handler.envelopes)
    assert cli("send", "--now").code == 0
    assert smtp_server.handler.envelopes[before:] == []
    # Until an operator lifts the suppression and re-queues her digest.
    assert cli("deliveries", "retry", "--all-failed").code == 0  # suppressed ones stay failed
    assert cli("send", "--now").code == 0
    assert smtp_server.handler.envelopes[before:] == []
    assert cli("subscriber", "unsuppress", "ada@example.org").code == 0
    assert "1 re-queued" in cli("deliveries", "retry", "--all-failed").out
    assert cli("send", "--now").code == 0
    retried = [e.rcpt_tos[0] for e in smtp_server.handler.envelopes[before:]]
    assert retried == ["ada@example.org"]


@pytest.mark.slow
def test_file_backend_preview_and_feeds(cli: Cli, tmp_path: Path, sample_path: Path) -> None:
    setup_pipeline(cli, sample_path)
    preview = cli("preview", "grace@example.org", "--html", str(tmp_path / "p.html"))
    assert preview.code == 0 and "Subject:" in preview.out
    assert "TrustSQL" in (tmp_path / "p.html").read_text(encoding="utf-8")
    assert list((tmp_path / "data" / "outbox").glob("*.eml")) == []  # preview sends nothing

    assert cli("send", "--now").code == 0
    outbox = sorted((tmp_path / "data" / "outbox").glob("*.eml"))
    assert len(outbox) == 2
    assert cli("preview", "grace@example.org").out.count("no new papers") == 1

    assert cli("feeds").code == 0
    feeds_dir = tmp_path / "data" / "feeds"
    first = feedparser.parse((feeds_dir / "text-to-sql.atom").read_bytes())
    assert not first.bozo
    assert first.feed.title.endswith("Text-to-SQL")
    assert {
        "TrustSQL: Benchmarking Text-to-SQL Reliability with Penalty-Based Scoring",
        "CodeS: Towards Building Open-source Language Models for Text-to-SQL",
    } <= {e.title for e in first.entries}
    assert cli("feeds").code == 0
    second = feedparser.parse((feeds_dir / "text-to-sql.atom").read_bytes())
    assert [e.id for e in first.entries] == [e.id for e in second.entries]
    index = (feeds_dir / "index.html").read_text(encoding="utf-8")
    assert "https://digest.example.org/feeds/oracle.atom" in index


@pytest.mark.slow
def test_later_dump_sends_only_new_papers(
    cli: Cli, config_file: Path, sample_path: Path, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    use_smtp(config_file, smtp_server)
    setup_pipeline(cli, sample_path)
    assert cli("send", "--now").code == 0
    sent_before = len(smtp_server.handler.envelopes)
    old_title = (
        "ORacle: Large Vision-Language Models for Knowledge-Guided Holistic OR Domain Modeling"
    )
    later = tmp_path / "mar15.txt"
    later.write_text(
        "new\n\nMar 15\n\n"
        f"{old_title}\n\nThe same paper again, with a changed abstract about an oracle.\n\n"
        "Oracle Sketches for Streaming Data\n\nA new paper about an oracle for streams.\n",
        encoding="utf-8",
    )
    result = cli("ingest", str(later))
    assert "1 new, 1 already known" in result.out
    assert cli("send", "--now").code == 0
    new_messages = smtp_server.handler.messages()[sent_before:]
    assert [m["To"].addresses[0].addr_spec for m in new_messages] == ["ada@example.org"]
    text = body(new_messages[0], "plain")
    assert "Oracle Sketches for Streaming Data" in text
    assert "ORacle" not in text
    assert str(new_messages[0]["Subject"]) == "Oracle Sketches for Streaming Data — Mar 15"
