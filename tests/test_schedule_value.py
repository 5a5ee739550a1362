"""The Schedule value: digest keys in the subscriber's time zone, due-ness, the next send time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digestd.errors import InputError
from digestd.schedule import Schedule

CREATED = datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_the_digest_key_is_the_local_date() -> None:
    late_evening_utc = datetime(2026, 1, 5, 22, 30, tzinfo=UTC)
    assert Schedule(timezone="UTC").digest_key(late_evening_utc) == "2026-01-05"
    assert Schedule(timezone="Asia/Tokyo").digest_key(late_evening_utc) == "2026-01-06"


def test_a_daily_digest_is_next_due_at_the_send_hour() -> None:
    daily = Schedule("daily", 7, "mon", "Europe/Paris")
    before = datetime(2026, 3, 10, 5, 0, tzinfo=UTC)  # 06:00 in Paris
    when = daily.next_send(before, last_key="2026-03-09", created=CREATED)
    assert when == datetime(2026, 3, 10, 7, tzinfo=ZoneInfo("Europe/Paris"))
    assert daily.is_due(when, last_key="2026-03-09", created=CREATED)
    assert not daily.is_due(when - timedelta(minutes=1), last_key="2026-03-09", created=CREATED)
    # Sent today already: tomorrow at seven.
    done = daily.next_send(when, last_key="2026-03-10", created=CREATED)
    assert done == datetime(2026, 3, 11, 7, tzinfo=ZoneInfo("Europe/Paris"))


def test_a_digest_due_now_is_next_sent_now() -> None:
    daily = Schedule("daily", 7, "mon", "UTC")
    now = datetime(2026, 3, 10, 9, tzinfo=UTC)
    assert daily.next_send(now, last_key="2026-03-09", created=CREATED) == now


def test_a_weekly_digest_waits_for_its_weekday_and_catches_up_after_downtime() -> None:
    weekly = Schedule("weekly", 8, "fri", "UTC")
    tuesday = datetime(2026, 3, 10, 9, tzinfo=UTC)
    # Last sent on the previous Friday: next on Friday the 13th at 08:00.
    assert weekly.next_send(tuesday, last_key="2026-03-06", created=CREATED) == datetime(
        2026, 3, 13, 8, tzinfo=UTC
    )
    # Down on Friday the 6th (last sent the 27th): due at once, anchored to that Friday.
    assert weekly.is_due(tuesday, last_key="2026-02-27", created=CREATED)


def test_the_next_send_time_across_a_dst_change() -> None:
    daily = Schedule("daily", 2, "mon", "Europe/Paris")  # 02:00 does not exist on Mar 29
    before = datetime(2026, 3, 28, 23, tzinfo=UTC)  # 00:00 on the 29th in Paris
    when = daily.next_send(before, last_key="2026-03-28", created=CREATED)
    assert when.date().isoformat() == "2026-03-29"
    assert daily.is_due(when, last_key="2026-03-28", created=CREATED)


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        (Schedule(frequency="hourly"), "frequency"),
        (Schedule(send_hour=24), "send hour"),
        (Schedule(weekday="someday"), "weekday"),
        (Schedule(timezone="Mars/Olympus"), "timezone"),
    ],
)
def test_a_bad_schedule_names_its_field(schedule: Schedule, field: str) -> None:
    with pytest.raises(InputError, match=field):
        schedule.checked()
