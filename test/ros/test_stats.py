"""Frame accounting invariant, percentiles, fps and diagnostic key/values."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from uhr_seg_ros.ros.stats import NodeStats, percentile


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def invariant_holds(stats: NodeStats) -> bool:
    c = stats.counts()
    return c.received == c.published + c.dropped + c.rejected + c.in_flight


def test_percentile_matches_numpy():
    values = sorted(np.random.default_rng(1).uniform(0, 100, 37).tolist())
    for q in (0, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_accounting_follows_every_frame():
    stats = NodeStats()
    for _ in range(5):
        stats.frame_received()
    stats.frame_dropped()
    stats.frame_rejected("truncated")
    stats.frame_rejected("truncated")
    stats.frame_published({"total": 10.0}, peak_memory_mb=12.0)
    c = stats.counts()
    assert (c.received, c.published, c.dropped, c.rejected, c.in_flight) == (5, 1, 1, 2, 1)
    assert invariant_holds(stats)
    assert stats.rejections() == {"truncated": 2}


def test_a_frame_cannot_leave_flight_twice():
    stats = NodeStats()
    stats.frame_received()
    stats.frame_published({}, 0.0)
    with pytest.raises(RuntimeError, match="accounting"):
        stats.frame_dropped()


def test_invariant_under_concurrent_callback_and_worker():
    stats = NodeStats()

    def callback():
        for _ in range(2000):
            stats.frame_received()

    def worker():
        done = 0
        while done < 1000:
            if stats.counts().in_flight == 0:
                continue
            if done % 2:
                stats.frame_rejected("x")
            else:
                stats.frame_published({"total": 1.0}, 0.0)
            done += 1
            assert invariant_holds(stats)

    threads = [threading.Thread(target=callback), threading.Thread(target=worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    c = stats.counts()
    assert c.received == 2000 and c.published + c.rejected == 1000 and c.in_flight == 1000


def test_latency_percentiles_over_a_sliding_window():
    stats = NodeStats(window=10)
    for ms in range(100):
        stats.frame_received()
        stats.frame_published({"infer": float(ms)}, 0.0)
    latency = stats.latency_ms("infer")
    assert latency[50] == pytest.approx(94.5)  # only the last 10 samples (90..99) count
    assert latency[99] == pytest.approx(98.91)
    assert stats.latency_ms("decode") is None


def test_fps_over_horizon_and_decay_to_zero():
    clock = FakeClock()
    stats = NodeStats(fps_horizon_s=5.0, clock=clock)
    for _ in range(11):
        stats.frame_received()
        stats.frame_published({}, 0.0)
        clock.now += 0.25
    assert stats.fps() == pytest.approx(4.0)
    clock.now += 10.0
    assert stats.fps() == 0.0


def test_diagnostic_values_carry_counts_stages_reasons_and_extra():
    stats = NodeStats()
    stats.frame_received()
    stats.frame_published(
        {"decode": 1, "infer": 5, "merge": 2, "total": 9, "extra_stage": 3}, peak_memory_mb=321.04
    )
    stats.frame_received()
    stats.frame_rejected("unknown_encoding")
    values = stats.diagnostic_values([("backend", "cpu"), ("memory_cap_mb", "1500.0")])
    keys = [k for k, _ in values]
    table = dict(values)
    assert table["frames_received"] == "2" and table["frames_rejected"] == "1"
    assert table["frames_published"] == "1" and table["frames_in_flight"] == "0"
    assert table["rejected_unknown_encoding"] == "1"
    assert table["latency_infer_p95_ms"] == "5.0" and table["peak_memory_mb"] == "321.0"
    # known stages in pipeline order, unknown ones after; extras last
    assert (
        keys.index("latency_decode_p50_ms")
        < keys.index("latency_infer_p50_ms")
        < keys.index("latency_total_p50_ms")
        < keys.index("latency_extra_stage_p50_ms")
    )
    assert keys[-2:] == ["backend", "memory_cap_mb"]
    assert all(isinstance(v, str) for _, v in values)
    assert "1/2 published" in stats.summary()
