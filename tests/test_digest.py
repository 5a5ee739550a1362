"""Who is due when, in their own timezone, and how a digest is assembled from matches."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from digestd.digest import CandidatePaper, QuerySource, digest_key, is_due, plan_digest
from digestd.match import compile_profiles, index_papers, match_profiles


def due(now: datetime, **kwargs: object) -> bool:
    options: dict[str, object] = {
        "timezone": "UTC",
        "frequency": "daily",
        "send_hour": 7,
        "weekday": "mon",
        "last_key": None,
        "created": datetime(2025, 12, 1, tzinfo=UTC),
    }
    options.update(kwargs)
    return is_due(now=now, **options)  # type: ignore[arg-type]


def test_daily_digest_waits_for_the_local_send_hour_and_goes_once_a_day() -> None:
    # 05:30 UTC is 06:30 in Paris (winter): not yet; 06:30 UTC is 07:30 in Paris: due
    assert not due(datetime(2026, 1, 5, 5, 30, tzinfo=UTC), timezone="Europe/Paris")
    assert due(datetime(2026, 1, 5, 6, 30, tzinfo=UTC), timezone="Europe/Paris")
    assert not due(
        datetime(2026, 1, 5, 6, 30, tzinfo=UTC), timezone="Europe/Paris", last_key="2026-01-05"
    )
    assert due(
        datetime(2026, 1, 5, 6, 30, tzinfo=UTC), timezone="Europe/Paris", last_key="2026-01-04"
    )
    # a daemon that was down at 07:00 still sends later that day
    assert due(
        datetime(2026, 1, 5, 22, 0, tzinfo=UTC), timezone="Europe/Paris", last_key="2026-01-04"
    )


def test_digest_key_is_the_local_date() -> None:
    late_evening_utc = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)
    assert digest_key(late_evening_utc, "UTC") == "2026-01-05"
    assert digest_key(late_evening_utc, "Asia/Tokyo") == "2026-01-06"
    assert digest_key(late_evening_utc, "America/New_York") == "2026-01-05"


def test_weekly_digest_stays_on_its_weekday_and_catches_up_after_downtime() -> None:
    weekly: dict[str, object] = {"frequency": "weekly", "weekday": "mon"}
    monday, tuesday = datetime(2026, 1, 5, 8, 0, tzinfo=UTC), datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
    assert not due(datetime(2026, 1, 5, 6, 0, tzinfo=UTC), **weekly)  # before the send hour
    assert due(monday, **weekly)
    assert not due(tuesday, **weekly, last_key="2026-01-05")
    # Monday's digest was made (even if it found nothing): nothing more until next Monday
    for day in range(6, 12):
        assert not due(datetime(2026, 1, day, 12, 0, tzinfo=UTC), **weekly, last_key="2026-01-05")
    assert due(datetime(2026, 1, 12, 8, 0, tzinfo=UTC), **weekly, last_key="2026-01-05")
    # the daemon was down on Monday: Wednesday catches up, and next week is Monday again
    assert due(datetime(2026, 1, 14, 3, 0, tzinfo=UTC), **weekly, last_key="2026-01-05")
    assert not due(datetime(2026, 1, 19, 6, 0, tzinfo=UTC), **weekly, last_key="2026-01-14")
    assert due(datetime(2026, 1, 19, 8, 0, tzinfo=UTC), **weekly, last_key="2026-01-14")


def test_new_weekly_subscriber_waits_for_the_next_weekday() -> None:
    weekly: dict[str, object] = {"frequency": "weekly", "weekday": "mon"}
    wednesday = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
    assert not due(wednesday, **weekly, created=datetime(2026, 1, 7, 8, tzinfo=UTC))
    assert due(datetime(2026, 1, 12, 9, 0, tzinfo=UTC), **weekly, created=wednesday)
    # created on a Monday morning before the send hour: that Monday's digest is theirs
    monday_morning = datetime(2026, 1, 12, 6, tzinfo=UTC)
    assert due(datetime(2026, 1, 12, 9, 0, tzinfo=UTC), **weekly, created=monday_morning)


def test_ignore_schedule_means_now() -> None:
    assert due(datetime(2026, 1, 6, 1, 0, tzinfo=UTC), frequency="weekly", ignore_schedule=True)


@pytest.fixture
def papers() -> dict[int, CandidatePaper]:
    rows = [
        (1, "Diffusion models for audio", "We study sound.", date(2026, 3, 14)),
        (2, "Audio tokenizers", "A diffusion model generates audio tokens.", date(2026, 3, 14)),
        (3, "Graph networks", "Nothing about the other topic.", date(2026, 3, 15)),
        (4, "Diffusion everywhere", "Diffusion models, diffusion again.", date(2026, 3, 15)),
    ]
    return {
        pid: CandidatePaper(
            pid,
            f"t:{pid}",
            title,
            abstract,
            f"https://x/{pid}",
            day,
            datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
        )
        for pid, title, abstract, day in rows
    }


def plan(papers: dict[int, CandidatePaper], queries: dict[str, str], **kwargs: object):  # type: ignore[no-untyped-def]
    result = match_profiles(
        compile_profiles(queries),
        index_papers({pid: (p.title, p.abstract) for pid, p in papers.items()}),
    )
    sources = [(QuerySource("query", q), result.get(k)) for k, q in queries.items()]
    options: dict[str, object] = {"already_sent": set(), "max_papers": 10}
    options.update(kwargs)
    return plan_digest(sources=sources, papers=papers, **options)  # type: ignore[arg-type]


def test_plan_ranks_title_hits_first_and_explains(papers: dict[int, CandidatePaper]) -> None:
    planned = plan(papers, {"a": "diffusion", "b": "audio"})
    assert planned is not None
    # 1: two title hits; 2: a title and two abstract hits; 4: one title hit and a repeat
    assert [e.uid for e in planned.entries] == ["t:1", "t:2", "t:4"]
    first = planned.entries[0]
    assert first.reasons == ("your query “diffusion”", "your query “audio”")
    assert set(first.matched_terms) == {"diffusion", "audio"}
    assert any(marked and text.lower() == "diffusion" for text, marked in first.title_segments)
    assert planned.digest_date == date(2026, 3, 15)


def test_plan_skips_sent_papers_caps_and_counts_the_rest(papers: dict[int, CandidatePaper]) -> None:
    planned = plan(papers, {"a": "diffusion OR audio"}, already_sent={1}, max_papers=1)
    assert planned is not None
    assert [e.uid for e in planned.entries] == ["t:2"]
    assert planned.more_count == 1
    assert set(planned.paper_ids) == {2, 4}
    assert plan(papers, {"a": "graph"}, already_sent={3}) is None
