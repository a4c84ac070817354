"""benchmarks/peer.py's U-Net goes through the same Segmenter and tiler as SGHRQ (the peer
comparison depends on it; it broke once, silently, when the backends began to read the
SegmentationModel contract)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import torch

from uhr_seg_ros.paths import REPO_ROOT
from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings


def _peer():
    spec = importlib.util.spec_from_file_location("peer", REPO_ROOT / "benchmarks" / "peer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_peer_unet_segments_a_frame_through_the_segmenter():
    peer = _peer()
    torch.manual_seed(0)
    names = ("a", "b", "c")
    model = peer.UNetResNet18(peer.UNetConfig(len(names), names)).eval()
    segmenter = Segmenter.from_settings(
        SegmenterSettings(backend_order=("cpu",), memory_cap_mb=1500.0), model=model
    )
    try:
        frame = np.random.default_rng(0).integers(0, 256, (70, 100, 3), dtype=np.uint8)
        result = segmenter.segment(frame)
    finally:
        segmenter.close()
    assert result.mask.shape == (70, 100)
    assert int(result.mask.max()) < len(names)
