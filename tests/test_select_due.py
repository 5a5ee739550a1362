"""select_due: who gets a digest now, and which open outbox rows are resumed (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digestd.jobs.plan_window import select_due
from digestd.models import Delivery, Subscriber

NOW = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)  # a Wednesday, after the default 07:00 send hour
CREATED = NOW - timedelta(days=30)


def person(sid: int, **fields: object) -> Subscriber:
    values: dict[str, object] = {
        "id": sid,
        "email": f"p{sid}@example.org",
        "created_at": CREATED,
        "confirmed_at": CREATED,
    }
    values.update(fields)
    return Subscriber(**values)


def open_row(sid: int, status: str = "planned", **fields: object) -> Delivery:
    values: dict[str, object] = {
        "id": 100 + sid,
        "subscriber_id": sid,
        "digest_key": "2026-03-03",
        "status": status,
        "message_id": f"<m{sid}@example.org>",
        "paper_count": 1,
        "created_at": NOW - timedelta(days=1),
    }
    values.update(fields)
    return Delivery(**values)


def ids(people: list[Subscriber]) -> list[int | None]:
    return [p.id for p in people]


def test_daily_subscribers_are_due_once_a_day() -> None:
    people = [person(1), person(2), person(3)]
    selection = select_due(
        people, last_keys={2: "2026-03-04", 3: "2026-03-03"}, open_rows={}, now=NOW
    )
    assert ids(selection.due) == [1, 3]  # 2 already had today's digest
    assert selection.resumed == {}


def test_before_the_send_hour_nobody_is_due() -> None:
    early = NOW.replace(hour=6)
    assert select_due([person(1)], last_keys={}, open_rows={}, now=early).due == []
    assert ids(select_due([person(1, send_hour=5)], last_keys={}, open_rows={}, now=early).due) == [
        1
    ]


def test_weekly_subscribers_wait_for_their_weekday() -> None:
    people = [
        person(1, frequency="weekly", weekday="wed"),
        person(2, frequency="weekly", weekday="thu"),
    ]
    last = {1: "2026-02-25", 2: "2026-02-26"}
    assert ids(select_due(people, last_keys=last, open_rows={}, now=NOW).due) == [1]


def test_ignoring_the_schedule_makes_everyone_due() -> None:
    people = [person(1), person(2)]
    last = {1: "2026-03-04", 2: "2026-03-04"}
    assert select_due(people, last_keys=last, open_rows={}, now=NOW).due == []
    forced = select_due(people, last_keys=last, open_rows={}, now=NOW, ignore_schedule=True)
    assert ids(forced.due) == [1, 2]


def test_unconfirmed_paused_and_suppressed_are_left_out_unless_previewing() -> None:
    people = [
        person(1, confirmed_at=None),
        person(2, active=False),
        person(3, suppressed_at=NOW - timedelta(days=2)),
        person(4),
    ]
    assert ids(select_due(people, last_keys={}, open_rows={}, now=NOW).due) == [4]
    preview = select_due(people, last_keys={}, open_rows={}, now=NOW, include_paused=True)
    assert ids(preview.due) == [2, 3, 4]  # a sign-up never confirmed gets none, even so


def test_an_open_row_is_resumed_whatever_the_schedule() -> None:
    rows = {1: open_row(1, "planned"), 2: open_row(2, "sending")}
    people = [person(1), person(2), person(3)]
    # All three had today's digest by key; the open rows are resumed all the same.
    last = {1: "2026-03-04", 2: "2026-03-04", 3: "2026-03-04"}
    selection = select_due(people, last_keys=last, open_rows=rows, now=NOW.replace(hour=1))
    assert ids(selection.due) == [1, 2]
    assert selection.resumed == rows


def test_a_retry_waits_for_its_next_attempt() -> None:
    rows = {
        1: open_row(1, "retry", next_attempt_at=NOW + timedelta(minutes=5)),
        2: open_row(2, "retry", next_attempt_at=NOW - timedelta(minutes=5)),
        3: open_row(3, "retry", next_attempt_at=None),
    }
    people = [person(1), person(2), person(3)]
    selection = select_due(people, last_keys={}, open_rows=rows, now=NOW)
    assert ids(selection.due) == [2, 3]  # 1 waits, and is not planned anew either
    assert set(selection.resumed) == {2, 3}
    assert selection.resumed[2] is rows[2]


def test_naive_stored_times_count_as_utc() -> None:
    # SQLite gives back naive datetimes: the retry time is read as UTC.
    naive = (NOW + timedelta(minutes=5)).replace(tzinfo=None)
    rows = {1: open_row(1, "retry", next_attempt_at=naive)}
    assert select_due([person(1)], last_keys={}, open_rows=rows, now=NOW).due == []


def test_select_due_reads_nothing_else() -> None:
    # The same inputs give the same answer: nothing but the arguments decides.
    people = [person(1), person(2, frequency="weekly", weekday="mon")]
    rows = {2: open_row(2)}
    first = select_due(people, last_keys={1: "2026-03-01"}, open_rows=rows, now=NOW)
    again = select_due(people, last_keys={1: "2026-03-01"}, open_rows=rows, now=NOW)
    assert first == again and ids(first.due) == [1, 2]
