"""Off-peak windows: when the worker pool may send an upstream batch work."""

from __future__ import annotations

import re
from datetime import datetime, time
from zoneinfo import ZoneInfo

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_window(text: str) -> tuple[time, time]:
    """``"22:00-06:00"`` → (22:00, 06:00); a window may wrap past midnight."""
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(f"batch window {text!r} is not HH:MM-HH:MM (e.g. 22:00-06:00)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"batch window {text!r} has an impossible time")
    end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
    return time(h1, m1), end


def open_now(windows: list[str], zone: ZoneInfo, now: datetime | None = None) -> bool:
    """Whether any window is open (no windows: always open)."""
    if not windows:
        return True
    clock = (now or datetime.now(zone)).astimezone(zone).time()
    for window in windows:
        start, end = parse_window(window)
        if start <= end:
            if start <= clock < end:
                return True
        elif clock >= start or clock < end:  # wraps past midnight
            return True
    return False
