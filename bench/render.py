"""Render benchmark: personalized digest messages (template, inlined CSS, MIME bytes) per second.

A day of 1,000 synthetic papers is matched against 10,000 subscribers (``--quick``: 500) with
the real pipeline (``match_queries`` then ``plan_digest``, ``[digest] max_papers`` = 25). Each
subscriber has one to three of the synthetic profiles and may follow one of 20 shared topics;
profiles are drawn among those that match at most 10 of the day's papers, as a reader narrows
a query that floods them. Setting this up is not measured.

Ours, one pass over every subscriber in a fresh process (caches start empty): ``render_digest``
(CSS inlined into the templates when they are loaded, entry fragments cached) then
``build_message`` (MIME bytes written directly). Baselines, on the first 300 digests (``--quick``:
50): the same templates without inlined CSS or caching, the CSS inlined into every message by
premailer (first baseline) or css_inline (second), and the message built with the standard
library's ``EmailMessage`` and serialized with the SMTP policy, as digestd did before.

Run: ``python -m bench.render [--quick]``.
"""

from __future__ import annotations

import datetime
import email.policy
import email.utils
import logging
import random
import statistics
import time
from collections.abc import Callable, Sequence
from email.headerregistry import Address
from email.message import EmailMessage

import css_inline
import premailer

from bench.common import Report, is_quick, peak_rss_mib, timed
from bench.data import SAMPLE_DATE, synthetic_papers, synthetic_profiles
from digestd.digest import CandidatePaper, Digest, QuerySource, plan_digest
from digestd.jobs.common import match_queries
from digestd.match import MatchCache
from digestd.message import EncodedPieces, OutgoingMessage, build_message
from digestd.render import DigestRenderer, RenderedMail, render_digest

PAPERS_PER_DAY = 1_000
TOPICS = 20
MAX_PAPERS = 25
MOST_MATCHES = 4
TARGET_CPU_US = 150
TARGET_RATIO = 10
FROM_ADDRESS, FROM_NAME, LIST_ID = "papers@digest.example.org", "Paper Digest", "digest.example.org"
NOW = datetime.datetime(2024, 3, 14, 7, tzinfo=datetime.UTC)


def day_of_digests(subscribers: int, *, seed: int = 5) -> list[Digest]:
    """The digests of ``subscribers`` readers for one day of papers, planned by the pipeline."""
    rng = random.Random(seed)
    stored = datetime.datetime(2024, 3, 14, 6, tzinfo=datetime.UTC)
    papers = {
        number: CandidatePaper(
            id=number,
            uid=f"2403.{number:05}",
            title=paper.title,
            abstract=paper.abstract,
            url=f"https://arxiv.org/abs/2403.{number:05}",
            dump_date=SAMPLE_DATE,
            stored_at=stored,
        )
        for number, paper in enumerate(synthetic_papers(PAPERS_PER_DAY), 1)
    }
    pool = dict(enumerate(synthetic_profiles(subscribers * 6 + TOPICS * 6)))
    cache = MatchCache()  # as a runtime keeps it: the papers are indexed once
    counted = match_queries(pool, papers.values(), cache=cache)
    narrow = [text for key, text in pool.items() if 1 <= len(counted.get(key)) <= MOST_MATCHES]
    topics = {f"Topic {n}": narrow[n] for n in range(TOPICS)}
    people: list[list[tuple[QuerySource, str]]] = []
    for _ in range(subscribers):
        chosen = [(QuerySource("query", q), q) for q in rng.sample(narrow, rng.randint(1, 3))]
        if rng.random() < 0.5:
            title = rng.choice(list(topics))
            chosen.append((QuerySource("topic", title), topics[title]))
        people.append(chosen)
    queries = {text: text for chosen in people for _, text in chosen}
    matches = match_queries(queries, papers.values(), cache=cache)
    digests = []
    for number, chosen in enumerate(people):
        planned = plan_digest(
            sources=[(source, matches.get(text)) for source, text in chosen],
            papers=papers,
            already_sent=frozenset(),
            max_papers=MAX_PAPERS,
        )
        if planned is None:
            continue
        digests.append(
            Digest(
                subscriber_name=rng.choice(("Ada Lovelace", "Zoë Müller", "", "李雷", "Grace H.")),
                subscriber_email=f"reader{number}@example.org",
                digest_date=planned.digest_date,
                entries=planned.entries,
                more_count=planned.more_count,
                more_papers=planned.more_papers,
                unsubscribe_url=f"https://digest.example.org/u/{number}.{rng.getrandbits(128):x}",
                manage_url=None,
                site_name="Paper Digest",
            )
        )
    return digests


def our_message(digest: Digest, pieces: EncodedPieces) -> OutgoingMessage:
    """One personalized message, the way the send job makes it (``pieces``: the runtime's
    encoded pieces)."""
    return build_message(
        render_digest(digest),
        from_address=FROM_ADDRESS,
        from_name=FROM_NAME,
        to_address=digest.subscriber_email,
        to_name=digest.subscriber_name,
        list_id=LIST_ID,
        unsubscribe_url=digest.unsubscribe_url,
        date=NOW,
        encoded_pieces=pieces,
    )


def stdlib_message(digest: Digest, rendered: RenderedMail) -> bytes:
    """``rendered`` as the standard library's EmailMessage writes it (digestd's former way)."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = Address(FROM_NAME, addr_spec=FROM_ADDRESS)
    message["To"] = Address(digest.subscriber_name, addr_spec=digest.subscriber_email)
    message["Subject"] = rendered.subject
    message["Date"] = email.utils.format_datetime(NOW)
    message["Message-ID"] = email.utils.make_msgid(domain="digest.example.org")
    message["List-Id"] = f"{FROM_NAME} <{LIST_ID}>"
    message["List-Unsubscribe"] = f"<{digest.unsubscribe_url}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message.as_bytes(policy=email.policy.SMTP)


def baseline(digests: Sequence[Digest], inline: Callable[[str], str]) -> tuple[float, int]:
    """CPU seconds and bytes for ``digests`` rendered plainly, inlined by ``inline``, built
    with EmailMessage."""
    plain = DigestRenderer(inline_css=False, cache_entries=False)
    size = 0
    with timed() as timing:
        for digest in digests:
            rendered = plain.render(digest)
            rendered = RenderedMail(rendered.subject, inline(rendered.html), rendered.text)
            size += len(stdlib_message(digest, rendered))
    return timing.cpu, size


def main() -> None:
    """Measure, print the table."""
    quick = is_quick()
    subscribers, sample = (500, 50) if quick else (10_000, 300)
    digests = day_of_digests(subscribers)
    css = DigestRenderer(inline_css=False).css
    logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)

    def with_premailer(html: str) -> str:
        return str(
            premailer.Premailer(
                html, css_text=css, allow_network=False, disable_validation=True
            ).transform()
        )

    inliner = css_inline.CSSInliner(extra_css=css, load_remote_stylesheets=False)

    size = 0
    by_size: dict[str, list[float]] = {"1-3": [], "4-7": [], "8+": []}
    clock = time.process_time
    pieces = EncodedPieces()
    with timed() as ours:
        for digest in digests:
            started = clock()
            size += len(our_message(digest, pieces).data)
            count = len(digest.entries)
            by_size["1-3" if count < 4 else "4-7" if count < 8 else "8+"].append(clock() - started)
    with timed() as again:
        for digest in digests:
            our_message(digest, pieces)
    premailer_cpu, premailer_size = baseline(digests[:sample], with_premailer)
    css_inline_cpu, css_inline_size = baseline(digests[:sample], inliner.inline)

    per_message = ours.cpu / len(digests) * 1e6
    per_premailer = premailer_cpu / sample * 1e6
    per_css_inline = css_inline_cpu / sample * 1e6
    report = Report(f"render: {len(digests):,} personalized digest messages")
    ratio = report.compare(
        "CPU per message vs premailer + EmailMessage",
        per_message,
        per_premailer,
        unit="µs",
        higher_is_better=False,
    )
    report.compare(
        "CPU per message vs css_inline + EmailMessage",
        per_message,
        per_css_inline,
        unit="µs",
        higher_is_better=False,
    )
    report.compare(
        "digest MB per CPU second vs premailer",
        size / ours.cpu / 1e6,
        premailer_size / premailer_cpu / 1e6,
        unit="MB/s",
        higher_is_better=True,
    )
    report.compare(
        "digest MB per CPU second vs css_inline",
        size / ours.cpu / 1e6,
        css_inline_size / css_inline_cpu / 1e6,
        unit="MB/s",
        higher_is_better=True,
    )
    report.figure("messages per second (wall clock, ours)", f"{len(digests) / ours.wall:,.0f}")
    report.figure(
        "CPU per message, same digests again (cached)", f"{again.cpu / len(digests) * 1e6:,.0f} µs"
    )
    for label, times in by_size.items():
        if times:
            report.figure(
                f"CPU per message showing {label} papers ({len(times):,})",
                f"{statistics.mean(times) * 1e6:,.0f} µs",
            )
    report.figure("peak memory (with the setup)", f"{peak_rss_mib():.0f} MiB")
    shown = [len(d.entries) for d in digests]
    report.note(
        f"{len(digests):,} digests of {subscribers:,} subscribers ({PAPERS_PER_DAY:,} papers "
        f"that day): {statistics.mean(shown):.1f} papers shown on average (median "
        f"{statistics.median(shown):.0f}, max {max(shown)}), "
        f"{sum(d.more_count > 0 for d in digests):,} with more listed; "
        f"{size / len(digests) / 1024:.1f} KiB per message"
    )
    report.note(
        f"baselines on the first {sample} digests: plain templates, CSS inlined per message, "
        "EmailMessage with quoted-printable parts serialized with the SMTP policy"
    )
    report.note(
        f"targets: at most {TARGET_CPU_US} µs CPU per message:"
        f" {'met' if per_message <= TARGET_CPU_US else 'NOT met'} ({per_message:.0f} µs);"
        f" {TARGET_RATIO}x the premailer baseline:"
        f" {'met' if ratio >= TARGET_RATIO else 'NOT met'} ({ratio:.1f}x)"
    )
    report.print()


if __name__ == "__main__":
    main()
