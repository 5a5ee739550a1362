"""When a subscriber's digest is due: a Schedule value (frequency, send hour, weekday, time zone)
with the digest key of a moment, whether a digest is due, and the next send time. Pure."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Protocol

from digestd.validation import WEEKDAYS, check_schedule


class Scheduled(Protocol):
    """Anything that carries the four schedule fields (a Subscriber, a sign-up request)."""

    @property
    def frequency(self) -> str:
        """ "daily" or "weekly"."""
        ...

    @property
    def send_hour(self) -> int:
        """The local hour, 0-23."""
        ...

    @property
    def weekday(self) -> str:
        """A weekly digest's day, "mon".."sun"."""
        ...

    @property
    def timezone(self) -> str:
        """An IANA time zone name."""
        ...


@dataclass(frozen=True)
class Schedule:
    """A subscriber's schedule: ``frequency`` "daily" or "weekly", ``send_hour`` 0-23 in
    ``timezone`` (IANA), and for a weekly one its ``weekday`` ("mon".."sun")."""

    frequency: str = "daily"
    send_hour: int = 7
    weekday: str = "mon"
    timezone: str = "UTC"

    @classmethod
    def of(cls, holder: Scheduled) -> Schedule:
        """The schedule a subscriber (or anything with the four fields) has."""
        return cls(holder.frequency, holder.send_hour, holder.weekday, holder.timezone)

    def checked(self) -> Schedule:
        """This schedule, or InputError naming the field that is wrong."""
        check_schedule(
            frequency=self.frequency,
            send_hour=self.send_hour,
            timezone=self.timezone,
            weekday=self.weekday,
        )
        return self

    def local(self, now: datetime) -> datetime:
        """``now`` (aware) in the schedule's time zone."""
        return now.astimezone(zoneinfo.ZoneInfo(self.timezone))

    def digest_key(self, now: datetime) -> str:
        """The key of the digest due at ``now``: the local date."""
        return self.local(now).date().isoformat()

    def anchor(self, day: date) -> date:
        """The day the digest due on local ``day`` belongs to: that day for a daily digest,
        the most recent ``weekday`` for a weekly one."""
        if self.frequency != "weekly":
            return day
        return day - timedelta(days=(day.weekday() - WEEKDAYS.index(self.weekday)) % 7)

    def is_due(self, now: datetime, *, last_key: str | None, created: datetime) -> bool:
        """Whether a digest is due at ``now``.

        A daily digest is due once per local day from the send hour on. A weekly digest belongs
        to the most recent ``weekday``: due from its send hour on if no digest was made since,
        so a daemon that was down that day catches up on its next run while the schedule stays
        anchored to the weekday. ``last_key`` is the local date of the last digest made,
        including one that found nothing new; before the first, the day before ``created``
        counts."""
        local = self.local(now)
        today = local.date()
        if last_key is not None:
            last = date.fromisoformat(last_key[:10])  # a forced digest's key has a time after it
        else:
            last = self.local(created).date() - timedelta(days=1)
        anchor = self.anchor(today)
        if last >= anchor:
            return False
        return anchor < today or local.hour >= self.send_hour

    def next_send(self, now: datetime, *, last_key: str | None, created: datetime) -> datetime:
        """The first moment at or after ``now`` when a digest is due (aware, in the schedule's
        time zone)."""
        local = self.local(now)
        zone = local.tzinfo
        if self.is_due(now, last_key=last_key, created=created):
            return local
        day = local.date()
        for _ in range(15):  # a weekly schedule is due within 8 days; DST adds no more
            candidate = datetime.combine(day, time(self.send_hour), tzinfo=zone)
            if candidate >= local and self.is_due(candidate, last_key=last_key, created=created):
                return candidate
            day += timedelta(days=1)
        raise AssertionError(f"no send time within two weeks for {self}")
