"""Tiered retention (grandfather-father-son), as a pure function of the backups' times.

Keep every backup of the last ``daily`` days, the newest of each of the last ``weekly``
ISO weeks, the newest of each of the last ``monthly`` months, and always the newest
verified backup. Everything else may go.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta


@dataclass(frozen=True)
class Tiers:
    daily: int = 30
    weekly: int = 12
    monthly: int = 12


def _week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _months_between(newer: date, older: date) -> int:
    return (newer.year - older.year) * 12 + newer.month - older.month


def tiers_of(backups: Iterable[tuple[str, datetime, bool]], now: datetime, tiers: Tiers) -> dict[str, str]:
    """name -> the tier that keeps it ("daily", "weekly", "monthly" or "newest verified"); names
    missing from the result may be deleted. ``backups``: (name, created_at, verified)."""
    items = sorted(backups, key=lambda b: b[1], reverse=True)
    today = now.date()
    keep: dict[str, str] = {}
    weeks_seen: set[date] = set()
    months_seen: set[tuple[int, int]] = set()
    for name, created, _ in items:  # newest first: the first seen of a week or month is its newest
        day = created.date()
        week, month = _week_start(day), (day.year, day.month)
        if (today - day).days < tiers.daily:
            keep.setdefault(name, "daily")
        if week not in weeks_seen:
            weeks_seen.add(week)
            if (_week_start(today) - week).days // 7 < tiers.weekly:
                keep.setdefault(name, "weekly")
        if month not in months_seen:
            months_seen.add(month)
            if _months_between(today, day) < tiers.monthly:
                keep.setdefault(name, "monthly")
    newest_verified = next((name for name, _, verified in items if verified), None)
    if newest_verified is not None:
        keep.setdefault(newest_verified, "newest verified")
    return keep
