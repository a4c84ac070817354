"""The one failure policy (uhr_seg_ros.failures) that the node, replay and batch all call."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uhr_seg_ros.failures import OOM_CAP_FACTOR, FrameFailed, segment_frame
from uhr_seg_ros.settings import SegmenterSettings
from uhr_seg_ros.tiling import PlanError

FRAME = np.zeros((8, 8, 3), np.uint8)


class FakeSegmenter:
    """Raises the queued errors in turn, then succeeds; records the caps it was set to."""

    def __init__(self, *errors: Exception, cap_error: Exception | None = None) -> None:
        self.errors = list(errors)
        self.cap_error = cap_error
        self.settings = SegmenterSettings(memory_cap_mb=1000.0, backend_order=("cpu",))
        self.calls = 0

    def segment(self, image):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "result"

    def set_memory_cap(self, mb: float) -> None:
        if self.cap_error is not None:
            raise self.cap_error
        self.settings = self.settings.replace(memory_cap_mb=mb)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ValueError("image must be uint8"), "bad_input"),
        (PlanError("no tile plan fits"), "no_plan"),
        (RuntimeError("cuDNN exploded"), "inference_failed"),
    ],
)
def test_each_failure_has_its_reason_and_is_not_retried(error, reason):
    segmenter = FakeSegmenter(error)
    with pytest.raises(FrameFailed) as info:
        segment_frame(segmenter, FRAME)
    assert info.value.reason == reason and segmenter.calls == 1
    assert segmenter.settings.memory_cap_mb == 1000.0


def test_out_of_memory_lowers_the_cap_and_retries_once(caplog):
    segmenter = FakeSegmenter(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert segment_frame(segmenter, FRAME) == "result"
    assert segmenter.calls == 2
    assert segmenter.settings.memory_cap_mb == pytest.approx(1000.0 * OOM_CAP_FACTOR)
    assert "lowered the cap to 750 MB" in caplog.text


def test_out_of_memory_twice_loses_the_frame():
    segmenter = FakeSegmenter(torch.cuda.OutOfMemoryError("a"), torch.cuda.OutOfMemoryError("b"))
    with pytest.raises(FrameFailed, match="again at 750 MB") as info:
        segment_frame(segmenter, FRAME)
    assert info.value.reason == "out_of_memory" and segmenter.calls == 2


def test_out_of_memory_without_a_smaller_plan_loses_the_frame_unretried():
    segmenter = FakeSegmenter(
        torch.cuda.OutOfMemoryError("a"), cap_error=PlanError("nothing fits 750 MB")
    )
    with pytest.raises(FrameFailed, match="no smaller plan fits: nothing fits") as info:
        segment_frame(segmenter, FRAME)
    assert info.value.reason == "out_of_memory" and segmenter.calls == 1
