"""The scanner's heartbeat clock: beats stay within half an interval of the clock, go out
early only when the gateway's word woke the process, and an idle process that hears the
gateway once an interval then beats with it (one wake-up an interval, not two)."""

from __future__ import annotations

import itertools

import psutil

from services.scanner import load
from services.scanner.heartbeat_clock import HeartbeatClock

INTERVAL = 1.0


def test_a_beat_is_early_only_with_the_gateways_word_and_never_more_than_half_an_interval() -> None:
    clock = HeartbeatClock(INTERVAL)
    clock.beaten(100.0)
    assert not clock.due(100.4, heard_gateway=True)  # earlier than the slack allows
    assert clock.due(100.5, heard_gateway=True)
    assert not clock.due(100.9)  # our own wake-ups wait for the clock
    assert clock.due(101.0)
    assert clock.seconds_left(100.0) == 1.5  # the latest it may sleep, if nothing wakes it
    assert clock.seconds_left(102.0) == 0.0
    clock.beat_at_once()
    assert clock.due(100.0)


def test_an_idle_process_beats_with_the_gateway_and_every_gap_stays_within_the_slack() -> None:
    """Simulated: the gateway beats every interval at its own phase (jittered by a few ms);
    the process wakes for each of them and when its clock runs out, as the worker does."""
    clock = HeartbeatClock(INTERVAL)
    clock.beaten(0.0)
    gateway_beats = [0.73 + k * INTERVAL + (0.004 if k % 2 else -0.004) for k in range(60)]
    now, beats, wakes = 0.0, [0.0], 0
    for arrival in gateway_beats:
        timer = now + clock.seconds_left(now)
        while timer < arrival:  # nothing came first: the clock's own wake-up
            wakes += 1
            now = timer
            assert clock.due(now)
            clock.beaten(now)
            beats.append(now)
            timer = now + clock.seconds_left(now)
        wakes += 1
        now = arrival
        if clock.due(now, heard_gateway=True):
            clock.beaten(now)
            beats.append(now)
    gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
    assert all(0.5 * INTERVAL <= gap <= 1.5 * INTERVAL for gap in gaps), gaps
    assert len(beats) >= len(gateway_beats)  # never fewer beats than intervals
    assert wakes == len(gateway_beats)  # aligned: every beat went with the gateway's


def test_the_host_cpu_times_read_from_proc_stat_equal_psutils() -> None:
    before = psutil.cpu_times()
    busy, total = load._busy_and_total()
    after = psutil.cpu_times()

    def busy_and_total(fields: dict[str, float]) -> tuple[float, float]:
        whole = sum(fields.values()) - fields["guest"] - fields["guest_nice"]
        return whole - fields["idle"] - fields["iowait"], whole

    low, high = busy_and_total(before._asdict()), busy_and_total(after._asdict())
    rounding = 1e-6  # psutil divides each field by the clock rate, we divide their sum
    assert low[0] - rounding <= busy <= high[0] + rounding
    assert low[1] - rounding <= total <= high[1] + rounding
