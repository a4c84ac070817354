"""Frame accounting and per-stage latency for the node (pure Python, thread-safe).

The node's subscription callback and its worker thread both report here, so every method takes
one lock. Every frame is in exactly one state, which keeps the invariant
``received == published + dropped + rejected + in_flight`` true at every instant:

* received → in flight (waiting in the depth-1 slot, or being processed);
* in flight → dropped (replaced by a newer frame before processing), rejected (bad frame,
  inference failure) or published.

The node turns :meth:`NodeStats.diagnostic_values` into ``diagnostic_msgs/KeyValue`` pairs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

#: Stages in report order: the node's queue wait and decode, the core's phases (its own total is
#: "segment"), then publish and the node's end-to-end total. Other stages follow alphabetically.
STAGES: tuple[str, ...] = (
    "queue",
    "decode",
    "upload",
    "gather",
    "infer",
    "merge",
    "download",
    "segment",
    "publish",
    "total",
)
PERCENTILES: tuple[int, ...] = (50, 95, 99)


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated ``q``-th percentile (0..100) of a non-empty ascending list."""
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclass(frozen=True)
class FrameCounts:
    received: int = 0
    published: int = 0
    dropped: int = 0
    rejected: int = 0
    in_flight: int = 0


class NodeStats:
    """Counts frames and keeps the latest ``window`` latencies of every stage.

    Args:
        window: latency samples kept per stage (percentiles are over these).
        fps_horizon_s: fps counts the frames published in the last this-many seconds, so it
            falls to 0 when frames stop.
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        window: int = 200,
        fps_horizon_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._window = window
        self._fps_horizon_s = fps_horizon_s
        self._clock = clock
        self._counts = FrameCounts()
        self._rejections: Counter[str] = Counter()
        self._latency_ms: dict[str, deque[float]] = {}
        self._publish_times: deque[float] = deque(maxlen=window)
        self._peak_memory_mb = 0.0

    def _move(self, **changes: int) -> None:
        moved = {name: getattr(self._counts, name) + delta for name, delta in changes.items()}
        if moved.get("in_flight", 0) < 0:
            raise RuntimeError("frame accounting error: a frame left flight twice")
        self._counts = replace(self._counts, **moved)

    def frame_received(self) -> None:
        with self._lock:
            self._move(received=1, in_flight=1)

    def frame_dropped(self) -> None:
        """A waiting frame was replaced by a newer one (or the node stopped) before processing."""
        with self._lock:
            self._move(dropped=1, in_flight=-1)

    def frame_rejected(self, reason: str) -> None:
        """A frame could not be segmented; ``reason`` is a short code (e.g. ``"truncated"``)."""
        with self._lock:
            self._move(rejected=1, in_flight=-1)
            self._rejections[reason] += 1

    def frame_published(self, timings_ms: Mapping[str, float], peak_memory_mb: float) -> None:
        """A mask went out; ``timings_ms`` maps stage names to milliseconds for this frame."""
        with self._lock:
            self._move(published=1, in_flight=-1)
            for stage, ms in timings_ms.items():
                samples = self._latency_ms.setdefault(stage, deque(maxlen=self._window))
                samples.append(float(ms))
            self._publish_times.append(self._clock())
            self._peak_memory_mb = max(self._peak_memory_mb, float(peak_memory_mb))

    def counts(self) -> FrameCounts:
        with self._lock:
            return self._counts

    def rejections(self) -> dict[str, int]:
        with self._lock:
            return dict(self._rejections)

    def fps(self) -> float:
        """Published frames per second over the last ``fps_horizon_s`` (0 with under 2)."""
        with self._lock:
            now = self._clock()
            recent = [t for t in self._publish_times if now - t <= self._fps_horizon_s]
        if len(recent) < 2 or recent[-1] == recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def latency_ms(self, stage: str) -> dict[int, float] | None:
        """``{50: p50, 95: p95, 99: p99}`` in ms for ``stage``, or None before its first sample."""
        with self._lock:
            samples = sorted(self._latency_ms.get(stage, ()))
        if not samples:
            return None
        return {q: percentile(samples, q) for q in PERCENTILES}

    def _stages(self) -> list[str]:
        with self._lock:
            seen = set(self._latency_ms)
        return [s for s in STAGES if s in seen] + sorted(seen - set(STAGES))

    def summary(self) -> str:
        """One line for a DiagnosticStatus message, e.g. ``"2.50 fps, total p50 380.0 ms, ..."``."""
        counts = self.counts()
        total = self.latency_ms("total")
        latency = f"total p50 {total[50]:.1f} ms" if total else "no frame segmented yet"
        return (
            f"{self.fps():.2f} fps, {latency}, {counts.published}/{counts.received} "
            f"published, {counts.dropped} dropped, {counts.rejected} rejected"
        )

    def diagnostic_values(self, extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        """Key/value strings: counts, fps, p50/p95/p99 per stage, rejection reasons, then
        ``extra`` (what only the node knows: backend, cap, tile plan)."""
        counts = self.counts()
        values = [
            ("frames_received", str(counts.received)),
            ("frames_published", str(counts.published)),
            ("frames_dropped", str(counts.dropped)),
            ("frames_rejected", str(counts.rejected)),
            ("frames_in_flight", str(counts.in_flight)),
            ("fps", f"{self.fps():.2f}"),
        ]
        for stage in self._stages():
            for q, ms in (self.latency_ms(stage) or {}).items():
                values.append((f"latency_{stage}_p{q}_ms", f"{ms:.1f}"))
        for reason, count in sorted(self.rejections().items()):
            values.append((f"rejected_{reason}", str(count)))
        with self._lock:
            values.append(("peak_memory_mb", f"{self._peak_memory_mb:.1f}"))
        values.extend(extra)
        return values
