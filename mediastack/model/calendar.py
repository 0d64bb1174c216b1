"""systemd OnCalendar expressions, the subset a backup schedule needs: parsed, enumerated, and measured.

A schedule must be a valid systemd timer (the tests hold every accepted form to `systemd-analyze
calendar`), and the stack must know the longest wait between two runs, so the "backup too old" alert
fires when a run is really missing and not before. The accepted forms, all in the host's local time:

    hourly | daily | weekly
    [WEEKDAYS] [*-*-*] HOURS:MINUTES[:SECONDS]

WEEKDAYS is a comma list of names or ranges (`Mon`, `Sat,Sun`, `Mon..Fri`); HOURS, MINUTES and SECONDS
are `*` or a comma list of numbers, ranges (`1..5`) and repetitions (`0/6` = 0, 6, 12, 18).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SHORTHANDS = {"hourly": "*-*-* *:00:00", "daily": "*-*-* 00:00:00", "weekly": "Mon *-*-* 00:00:00"}
WEEK = 7 * 24 * 3600
FORMS = "hourly, daily, weekly, or [WEEKDAYS] [*-*-*] HH:MM[:SS], e.g. '*-*-* 03:30:00' or 'Sun 05:00'"


@dataclass(frozen=True)
class Calendar:
    expression: str
    weekdays: tuple[int, ...]  # 0 = Monday
    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    seconds: tuple[int, ...]

    def week_offsets(self) -> list[int]:
        """Every elapse in one week, as seconds after Monday 00:00, sorted."""
        return sorted(
            d * 86400 + h * 3600 + m * 60 + s
            for d in self.weekdays
            for h in self.hours
            for m in self.minutes
            for s in self.seconds
        )

    def max_gap_seconds(self) -> int:
        """The longest wait between two consecutive elapses (the schedule repeats every week)."""
        offsets = self.week_offsets()
        gaps = [b - a for a, b in pairwise(offsets)]
        gaps.append(offsets[0] + WEEK - offsets[-1])
        return max(gaps)

    def next_elapses(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` elapses strictly after `after` (naive local time), as systemd computes them."""
        monday = (after - timedelta(days=after.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        found: list[datetime] = []
        week = 0
        while len(found) < count:
            for offset in self.week_offsets():
                at = monday + timedelta(weeks=week, seconds=offset)
                if at > after:
                    found.append(at)
                    if len(found) == count:
                        break
            week += 1
        return found


def _numbers(field: str, low: int, high: int, what: str) -> tuple[int, ...]:
    if field == "*":
        return tuple(range(low, high + 1))
    values: set[int] = set()
    for item in field.split(","):
        if m := re.fullmatch(r"(\d{1,2})", item):
            values.add(int(m[1]))
        elif m := re.fullmatch(r"(\d{1,2})\.\.(\d{1,2})", item):
            start, end = int(m[1]), int(m[2])
            if start > end:
                raise ValueError(f"{what} range {item} runs backwards")
            values.update(range(start, end + 1))
        elif m := re.fullmatch(r"(\d{1,2})/(\d{1,2})", item):
            start, step = int(m[1]), int(m[2])
            if step == 0:
                raise ValueError(f"{what} repetition {item} has a step of 0")
            values.update(range(start, high + 1, step))
        else:
            raise ValueError(f"{what} {item!r} is not a number, a range a..b or a repetition a/step")
    if not values or min(values) < low or max(values) > high:
        raise ValueError(f"{what} must be between {low} and {high}")
    return tuple(sorted(values))


def _weekdays(field: str) -> tuple[int, ...]:
    def day(name: str) -> int:
        lowered = name.lower()
        if lowered in WEEKDAYS:
            return WEEKDAYS.index(lowered)
        if lowered in FULL_WEEKDAYS:
            return FULL_WEEKDAYS.index(lowered)
        raise ValueError(f"{name!r} is not a weekday (Mon, Tue, ... Sun)")

    days: set[int] = set()
    for item in field.split(","):
        if ".." in item:
            first, last = (day(x) for x in item.split("..", 1))
            if first > last:
                raise ValueError(f"weekday range {item} runs backwards")
            days.update(range(first, last + 1))
        else:
            days.add(day(item))
    return tuple(sorted(days))


def parse(expression: str) -> Calendar:
    """The schedule, or ValueError saying what is wrong and which forms are accepted."""
    try:
        return _parse(expression)
    except ValueError as error:
        text = str(error)
        raise ValueError(text if FORMS in text else f"{text}; use {FORMS}") from None


def _parse(expression: str) -> Calendar:
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"must be a systemd calendar expression: {FORMS}")
    text = SHORTHANDS.get(expression.strip().lower(), expression.strip())
    parts = text.split()
    weekdays = tuple(range(7))
    if parts and re.fullmatch(r"[A-Za-z][A-Za-z.,]*", parts[0]):
        weekdays = _weekdays(parts.pop(0))
    if parts and parts[0] == "*-*-*":
        parts.pop(0)
    if len(parts) != 1:
        raise ValueError(f"{expression!r} is not a schedule this stack accepts; use {FORMS}")
    fields = parts[0].split(":")
    if len(fields) not in (2, 3):
        raise ValueError(f"time {parts[0]!r} must be HH:MM or HH:MM:SS")
    hours = _numbers(fields[0], 0, 23, "hour")
    minutes = _numbers(fields[1], 0, 59, "minute")
    seconds = _numbers(fields[2], 0, 59, "second") if len(fields) == 3 else (0,)
    return Calendar(expression, weekdays, hours, minutes, seconds)


def format_duration(seconds: float) -> str:
    """A Prometheus duration such as 30h or 1h30m."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"


def cron_expression(expression: str) -> str:
    """The same schedule as a five-field cron line (minute hour day month weekday), for images that run their
    own cron (supercronic reads this form: aptible/supercronic cronexpr/README.md; weekday 0 is Sunday).
    ValueError when it fires on a second other than :00, which a five-field line cannot say."""
    calendar = parse(expression)
    if calendar.seconds != (0,):
        raise ValueError(f"{expression!r} fires at seconds other than :00; a cron schedule runs on whole minutes")

    def field(values: tuple[int, ...], low: int, high: int) -> str:
        return "*" if values == tuple(range(low, high + 1)) else ",".join(str(v) for v in values)

    weekdays = "*" if len(calendar.weekdays) == 7 else ",".join(str((d + 1) % 7) for d in calendar.weekdays)
    return f"{field(calendar.minutes, 0, 59)} {field(calendar.hours, 0, 23)} * * {weekdays}"
