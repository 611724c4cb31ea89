"""Growth forecast: a least-squares line through a volume's history. Pure: no I/O, no clock.

The line is fitted to (time in days, total_size in bytes) over every stored point. How far
it can be trusted is given three ways: the coefficient of determination (`r_squared`), the
standard error of the slope (needs three points or more), and a coarse `confidence` label
from the number of points, the time they span and `r_squared`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Confidence = Literal["insufficient_data", "low", "medium", "high"]

SECONDS_PER_DAY = 86_400.0
# Past this, "when full" is no answer anyone can act on (and datetimes end at year 9999).
MAX_DAYS_TO_FULL = 36_500.0
# (points, span in days, r_squared) each label needs at least.
_HIGH = (10, 7.0, 0.9)
_MEDIUM = (5, 1.0, 0.6)


@dataclass(frozen=True, slots=True)
class LineFit:
    """size ≈ intercept + slope * (days since origin)."""

    origin: datetime
    points: int
    span_days: float
    slope: float  # bytes per day
    intercept: float  # bytes at `origin`
    r_squared: float
    slope_stderr: float | None  # bytes per day; None with two points (no degrees of freedom)

    def value_at(self, moment: datetime) -> float:
        return self.intercept + self.slope * _days_between(self.origin, moment)


def _days_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / SECONDS_PER_DAY


def fit_line(points: Sequence[tuple[datetime, int]]) -> LineFit | None:
    """Ordinary least squares; None with fewer than two points or no spread in time."""
    if len(points) < 2:
        return None
    origin = min(moment for moment, _ in points)
    xs = [_days_between(origin, moment) for moment, _ in points]
    ys = [float(size) for _, size in points]
    n = len(points)
    mean_x, mean_y = math.fsum(xs) / n, math.fsum(ys) / n
    sxx = math.fsum((x - mean_x) ** 2 for x in xs)
    if sxx == 0.0:
        return None
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    ss_res = math.fsum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = math.fsum((y - mean_y) ** 2 for y in ys)
    # A series with no variance is fitted exactly by a flat line.
    r_squared = 1.0 if ss_tot == 0.0 else max(0.0, 1.0 - ss_res / ss_tot)
    stderr = math.sqrt(ss_res / (n - 2) / sxx) if n > 2 else None
    return LineFit(origin, n, max(xs), slope, intercept, r_squared, stderr)


def _meets(fit: LineFit, needs: tuple[int, float, float]) -> bool:
    points, span_days, r_squared = needs
    return fit.points >= points and fit.span_days >= span_days and fit.r_squared >= r_squared


def confidence(fit: LineFit | None) -> Confidence:
    if fit is None:
        return "insufficient_data"
    if _meets(fit, _HIGH):
        return "high"
    return "medium" if _meets(fit, _MEDIUM) else "low"


@dataclass(frozen=True, slots=True)
class Forecast:
    points: int
    span_days: float
    current_size: int | None
    growth_bytes_per_day: float | None
    growth_stderr_bytes_per_day: float | None
    r_squared: float | None
    confidence: Confidence
    projected_at: datetime
    projected_size: int | None
    full_at: datetime | None
    full_reason: str  # why `full_at` is what it is (always set, most useful when null)
    message: str | None  # set when there is too little data for a fit


def forecast(
    points: Sequence[tuple[datetime, int]],
    now: datetime,
    days: float,
    free_bytes: int | None,
    free_error: str | None = None,
) -> Forecast:
    """The fit over `points`, projected `days` ahead of `now`; full when `free_bytes` runs out."""
    fit = fit_line(points)
    projected_at = now + timedelta(days=days)
    latest = max(points)[1] if points else None
    if fit is None:
        message = f"too little data: {len(points)} scan(s) at distinct times, 2 needed"
        return Forecast(
            len(points), 0.0, latest, None, None, None, "insufficient_data",
            projected_at, None, None, message, message,
        )  # fmt: skip
    full_at, reason = _full_at(fit.slope, now, free_bytes, free_error)
    return Forecast(
        points=fit.points,
        span_days=fit.span_days,
        current_size=latest,
        growth_bytes_per_day=fit.slope,
        growth_stderr_bytes_per_day=fit.slope_stderr,
        r_squared=fit.r_squared,
        confidence=confidence(fit),
        projected_at=projected_at,
        projected_size=max(0, round(fit.value_at(projected_at))),
        full_at=full_at,
        full_reason=reason,
        message=None,
    )


def _full_at(
    growth_bytes_per_day: float, now: datetime, free_bytes: int | None, free_error: str | None
) -> tuple[datetime | None, str]:
    if growth_bytes_per_day <= 0:
        return None, "not growing"
    if free_bytes is None:
        return None, f"free space unknown: {free_error or 'not measured'}"
    days_to_full = free_bytes / growth_bytes_per_day
    if days_to_full > MAX_DAYS_TO_FULL:
        return None, "more than 100 years away at this rate"
    return now + timedelta(days=days_to_full), "free space now divided by the growth rate"
