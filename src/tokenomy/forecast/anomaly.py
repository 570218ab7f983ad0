"""Spend spikes per principal or workflow: a runaway agent loop, a leaked key.

For every value of a dimension (a user, a key, a workflow, a team, a project) the spend of
the latest window (default 15 whole minutes) is compared with the same-length windows of
its own recent past (default 24 hours, from ``rollup_minute``, idle windows counted as
zero). Spend per window is skewed and often zero, so the centre is the median and the
spread the MAD (scaled to a standard deviation), floored by the mean: for a mostly idle
principal the MAD is zero, and any use at all would otherwise look infinitely unusual.
A window is a finding when its robust z-score reaches ``z_min``, it exceeds every window
of the baseline, and it is worth at least ``min_usd``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tokenomy.budgets.periods import iso_utc
from tokenomy.database import Connection
from tokenomy.money import to_pico, usd_micro

DIMENSIONS = ("user", "key_id", "workflow", "team", "project")
WINDOW_MINUTES = 15
BASELINE_HOURS = 24
MIN_WINDOWS = 4  # baseline windows needed before anything is judged
Z_MIN = 5.0
MIN_USD = Decimal("0.10")
MAD_TO_SD = 1.4826  # the MAD of normal data times this is its standard deviation
_CONTEXT = ("tenant", "key_id", "user", "team", "department", "project", "environment")


@dataclass(frozen=True, slots=True)
class Finding:
    tenant: str
    dimension: str
    value: str
    window_start_ms: int
    window_end_ms: int
    observed_pico: int
    expected_pico: float  # mean spend per window over the baseline
    median_pico: float
    max_pico: float  # the largest baseline window
    z: float
    factor: float | None  # observed / expected; None when the baseline is all zero
    requests: int
    expected_requests: float
    baseline_windows: int
    top_models: list[tuple[str, int]] = field(default_factory=list)  # (model, cost_pico)
    principals: list[dict[str, str]] = field(default_factory=list)  # who spent it

    def describe(self) -> str:
        factor = f"{self.factor:.1f}x" if self.factor is not None else "from zero"
        return (
            f"spend spike: {self.dimension}={self.value} spent ${usd_micro(self.observed_pico)} in "
            f"{(self.window_end_ms - self.window_start_ms) // 60000} min, "
            f"usually ${usd_micro(self.expected_pico)} ({factor}, z={self.z:.1f})"
        )

    def public(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "dimension": self.dimension,
            "value": self.value,
            "window_start": _iso_str(self.window_start_ms),
            "window_end": _iso_str(self.window_end_ms),
            "observed_usd": usd_micro(self.observed_pico),
            "expected_usd": usd_micro(self.expected_pico),
            "median_usd": usd_micro(self.median_pico),
            "baseline_max_usd": usd_micro(self.max_pico),
            "factor": None if self.factor is None else round(self.factor, 2),
            "z": round(self.z, 2),
            "requests": self.requests,
            "expected_requests": round(self.expected_requests, 2),
            "baseline_windows": self.baseline_windows,
            "top_models": [{"model": m, "cost_usd": usd_micro(c)} for m, c in self.top_models],
            "principals": self.principals,
            "summary": self.describe(),
        }


@dataclass(frozen=True, slots=True)
class Scan:
    window_start_ms: int
    window_end_ms: int
    baseline_windows: int
    findings: list[Finding]
    note: str

    def public(self) -> dict[str, Any]:
        return {
            "window_start": _iso_str(self.window_start_ms),
            "window_end": _iso_str(self.window_end_ms),
            "baseline_windows": self.baseline_windows,
            "note": self.note,
            "findings": [f.public() for f in self.findings],
        }


def detect_anomalies(
    conn: Connection,
    now_ms: int,
    *,
    window_minutes: int = WINDOW_MINUTES,
    baseline_hours: int = BASELINE_HOURS,
    dimensions: tuple[str, ...] = DIMENSIONS,
    z_min: float = Z_MIN,
    min_usd: Decimal = MIN_USD,
) -> Scan:
    """Spikes in the last ``window_minutes`` whole minutes before ``now_ms``."""
    if window_minutes < 1 or baseline_hours * 60 < window_minutes:
        raise ValueError("the window must be at least a minute and shorter than the baseline")
    width = window_minutes * 60
    end = now_ms // 60000 * 60
    current = baseline_hours * 60 // window_minutes  # index of the window being judged
    origin = end - (current + 1) * width
    first = conn.execute(
        "SELECT MIN(minute) FROM rollup_minute WHERE minute >= ? AND minute < ?", (origin, end)
    ).fetchone()[0]
    skip = 0 if first is None else -(-(first - origin) // width)  # whole windows only
    windows = max(current - skip, 0)
    scan = Scan((end - width) * 1000, end * 1000, windows, [], "")
    if windows < MIN_WINDOWS:
        note = f"{windows} baseline windows of {window_minutes} min; {MIN_WINDOWS} needed"
        return Scan(scan.window_start_ms, scan.window_end_ms, windows, [], note)
    findings = []
    for dimension in dimensions:
        findings += _scan_dimension(
            conn, dimension, origin, width, current, skip, z_min, to_pico(min_usd), scan
        )
    findings.sort(key=lambda f: -f.z)
    note = f"{len(findings)} spikes; baseline {windows} windows of {window_minutes} min"
    return Scan(scan.window_start_ms, scan.window_end_ms, windows, findings, note)


def _scan_dimension(
    conn: Connection,
    dimension: str,
    origin: int,
    width: int,
    current: int,
    skip: int,
    z_min: float,
    min_pico: int,
    scan: Scan,
) -> list[Finding]:
    if dimension not in _CONTEXT and dimension not in ("workflow", "model", "tier"):
        raise ValueError(f"cannot watch spend by {dimension!r}")
    cost: dict[tuple[str, str], list[int]] = {}
    requests: dict[tuple[str, str], list[int]] = {}
    rows = conn.execute(
        f"SELECT tenant, {dimension}, (minute - ?) / ?, SUM(cost_pico), SUM(requests) "
        f"FROM rollup_minute WHERE minute >= ? AND minute < ? AND {dimension} != '' "
        "GROUP BY 1, 2, 3",
        (origin, width, origin + skip * width, origin + (current + 1) * width),
    )
    for tenant, value, index, spend, count in rows:
        key = (str(tenant), str(value))
        if key not in cost:
            cost[key] = [0] * (current + 1)
            requests[key] = [0] * (current + 1)
        cost[key][int(index)] += int(spend)
        requests[key][int(index)] += int(count)
    found = []
    for key, spend in cost.items():
        observed, baseline = spend[current], spend[skip:current]
        if observed < min_pico or observed <= max(baseline):
            continue
        median = statistics.median(baseline)
        mad = MAD_TO_SD * statistics.median(abs(v - median) for v in baseline)
        mean = statistics.fmean(baseline)
        z = (observed - median) / max(mad, mean, min_pico / z_min, 1.0)
        if z < z_min:
            continue
        found.append(
            Finding(
                tenant=key[0],
                dimension=dimension,
                value=key[1],
                window_start_ms=scan.window_start_ms,
                window_end_ms=scan.window_end_ms,
                observed_pico=observed,
                expected_pico=mean,
                median_pico=median,
                max_pico=max(baseline),
                z=z,
                factor=observed / mean if mean else None,
                requests=requests[key][current],
                expected_requests=statistics.fmean(requests[key][skip:current]),
                baseline_windows=current - skip,
                top_models=_top_models(conn, dimension, key, scan),
                principals=_principals(conn, dimension, key, scan),
            )
        )
    return found


def _window_rows(dimension: str, scan: Scan) -> tuple[str, list[Any]]:
    where = f"tenant = ? AND {dimension} = ? AND minute >= ? AND minute < ?"
    return where, [scan.window_start_ms // 1000, scan.window_end_ms // 1000]


def _top_models(
    conn: Connection, dimension: str, key: tuple[str, str], scan: Scan
) -> list[tuple[str, int]]:
    where, bounds = _window_rows(dimension, scan)
    rows = conn.execute(
        f"SELECT model, SUM(cost_pico) FROM rollup_minute WHERE {where} "
        "GROUP BY model ORDER BY 2 DESC LIMIT 3",
        [*key, *bounds],
    )
    return [(str(model), int(cost)) for model, cost in rows]


def _principals(
    conn: Connection, dimension: str, key: tuple[str, str], scan: Scan
) -> list[dict[str, str]]:
    """The principals behind the spike (the biggest spenders first), for the alert's
    reader and for finding the budgets that cover them."""
    where, bounds = _window_rows(dimension, scan)
    columns = ", ".join(_CONTEXT)
    rows = conn.execute(
        f"SELECT {columns}, workflow, SUM(cost_pico) FROM rollup_minute WHERE {where} "
        f"GROUP BY {columns}, workflow ORDER BY {len(_CONTEXT) + 2} DESC LIMIT 10",
        [*key, *bounds],
    )
    return [
        {name: str(v) for name, v in zip((*_CONTEXT, "workflow"), row[:-1], strict=True)}
        for row in rows
    ]


def _iso_str(ms: int) -> str:
    text = iso_utc(ms)
    assert text is not None  # windows always end in the past
    return text
