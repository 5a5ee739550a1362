"""Untrusted text from a dump survives into the HTML part, the text part and the Atom feed,
escaped where it must be and otherwise intact; control characters are dropped."""

from __future__ import annotations

import re
from collections.abc import Callable
from email import message_from_bytes, policy
from html import unescape
from pathlib import Path

import feedparser
import pytest

from tests.conftest import CliResult

Cli = Callable[..., CliResult]

TITLE = "Quantum <script>alert(1)</script> & ]]> 量子 Ωmega naïve\x07 Benchmarks"
ABSTRACT = (
    "We study quantum <b>bold</b> claims & ]]> edge cases\x1b[31m in 日本語 text "
    "with \"quotes\" and 'apostrophes'. Nothing here is markup."
)
CLEAN_TITLE = TITLE.replace("\x07", "")


@pytest.mark.slow
def test_hostile_text_is_escaped_and_intact_everywhere(cli: Cli, tmp_path: Path) -> None:
    dump = tmp_path / "hostile.txt"
    dump.write_text(f"header\n\nMar 14\n\n{TITLE}\n\n{ABSTRACT}\n", encoding="utf-8")
    assert cli("init").code == 0
    assert cli("ingest", str(dump)).code == 0
    assert cli("topic", "add", "quantum", "--query", "quantum", "--title", "Q <&> topic").code == 0
    added = cli(
        "subscriber",
        "add",
        "q@example.org",
        "--name",
        "Zoë <admin>\r\nBcc: evil@example.org",
        "--query",
        "quantum",
    )
    assert added.code == 0, added.err
    assert cli("send", "--now").code == 0
    assert cli("feeds").code == 0

    [eml] = (tmp_path / "data" / "outbox").glob("*.eml")
    raw = eml.read_bytes()
    message = message_from_bytes(raw, policy=policy.default)
    assert message.get_all("Bcc") is None  # the name could not inject a header
    assert [a.addr_spec for a in message["To"].addresses] == ["q@example.org"]
    assert "\x07" not in raw.decode("ascii") and "\x1b" not in raw.decode("ascii")

    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    assert html_part is not None and text_part is not None
    html = str(html_part.get_content())
    text = str(text_part.get_content())
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&amp; ]]&gt;" in html and "量子 Ωmega naïve" in html and "日本語" in html
    unmarked = re.sub(r"</?mark[^>]*>", "", html)
    assert "&lt;b&gt;bold&lt;/b&gt; claims &amp; ]]&gt; edge cases" in unmarked
    flat_text = " ".join(text.split())
    assert "<script>alert(1)</script> & ]]> 量子 Ωmega naïve" in flat_text
    assert "<b>bold</b> claims & ]]> edge cases" in flat_text

    feed = feedparser.parse((tmp_path / "data" / "feeds" / "quantum.atom").read_bytes())
    assert not feed.bozo
    [entry] = feed.entries
    # Text constructs are declared HTML: a reader shows exactly the text written.
    assert entry.title_detail.type == entry.summary_detail.type == "text/html"
    assert " ".join(unescape(entry.title).split()) == " ".join(CLEAN_TITLE.split())
    assert "<b>bold</b> claims & ]]> edge cases" in unescape(entry.summary)
    index = (tmp_path / "data" / "feeds" / "index.html").read_text(encoding="utf-8")
    assert "Q &lt;&amp;&gt; topic" in index
