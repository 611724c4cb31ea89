"""The forecast's arithmetic (pure functions, no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.gateway.history.forecast import confidence, fit_line, forecast

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _series(sizes: list[int], step: timedelta = timedelta(days=1)) -> list[tuple[datetime, int]]:
    return [(T0 + index * step, size) for index, size in enumerate(sizes)]


def test_exact_line_is_recovered() -> None:
    fit = fit_line(_series([1000 + 500 * day for day in range(10)]))
    assert fit is not None
    assert fit.slope == pytest.approx(500.0)
    assert fit.intercept == pytest.approx(1000.0)
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.slope_stderr == pytest.approx(0.0, abs=1e-9)
    assert fit.span_days == pytest.approx(9.0)
    assert fit.value_at(T0 + timedelta(days=20)) == pytest.approx(11_000.0)


def test_unchanged_size_has_a_rate_of_exactly_zero() -> None:
    fit = fit_line(_series([123_456_789] * 5, step=timedelta(minutes=7)))
    assert fit is not None
    assert fit.slope == 0.0
    assert fit.r_squared == 1.0


def test_noisy_growth_is_least_squares() -> None:
    # y = 2x + noise with known closed-form answer: slope = Sxy / Sxx.
    points = _series([0, 3, 4, 7, 8])
    fit = fit_line(points)
    assert fit is not None
    assert fit.slope == pytest.approx(2.0)  # Sxy = 20, Sxx = 10
    assert fit.intercept == pytest.approx(0.4)
    assert 0.9 < fit.r_squared < 1.0
    assert fit.slope_stderr is not None and fit.slope_stderr > 0


def test_too_little_data_gives_no_fit() -> None:
    assert fit_line([]) is None
    assert fit_line(_series([5])) is None
    assert fit_line([(T0, 1), (T0, 2)]) is None  # no spread in time
    with_two = fit_line(_series([1, 2]))
    assert with_two is not None and with_two.slope_stderr is None


def test_confidence_labels() -> None:
    assert confidence(None) == "insufficient_data"
    assert confidence(fit_line(_series([1, 2]))) == "low"
    assert confidence(fit_line(_series([10, 20, 30, 40, 50]))) == "medium"
    assert confidence(fit_line(_series(list(range(0, 1200, 100))))) == "high"
    scattered = fit_line(_series([0, 900, 0, 900, 0, 900, 0, 900, 0, 1000, 0, 900]))
    assert confidence(scattered) == "low"


def test_forecast_projects_and_says_when_full() -> None:
    now = T0 + timedelta(days=9)
    result = forecast(_series([1000 * day for day in range(10)]), now, 30, free_bytes=50_000)
    assert result.growth_bytes_per_day == pytest.approx(1000.0)
    assert result.projected_size == 39_000
    assert result.projected_at == now + timedelta(days=30)
    assert result.current_size == 9000
    assert result.full_at == now + timedelta(days=50)
    assert result.confidence == "high"
    assert result.message is None


def test_forecast_never_full_when_not_growing_or_free_space_unknown() -> None:
    now = T0 + timedelta(days=3)
    flat = forecast(_series([7] * 4), now, 30, free_bytes=10)
    assert flat.growth_bytes_per_day == 0.0 and flat.full_at is None
    assert flat.full_reason == "not growing"
    assert flat.projected_size == 7
    shrinking = forecast(_series([9, 8, 7, 6]), now, 30, free_bytes=10)
    assert shrinking.full_at is None and shrinking.projected_size == 0
    unknown = forecast(_series([1, 2, 3]), now, 30, free_bytes=None, free_error="ENOENT")
    assert unknown.full_at is None and unknown.full_reason == "free space unknown: ENOENT"
    far = forecast(_series([1, 2, 3]), now, 30, free_bytes=10**15)
    assert far.full_at is None and "100 years" in far.full_reason


def test_forecast_with_one_point_says_it_has_too_little_data() -> None:
    result = forecast(_series([42]), T0, 30, free_bytes=100)
    assert result.confidence == "insufficient_data"
    assert result.growth_bytes_per_day is None and result.projected_size is None
    assert result.full_at is None
    assert result.current_size == 42
    assert result.message is not None and "too little data" in result.message
