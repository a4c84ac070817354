"""Bag replay: image topics of a rosbag2 → mono8 mask topics with the same stamps (no DDS)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")

from rosbags.rosbag2 import Reader, Writer
from rosbags.typesys import Stores, get_typestore

from uhr_seg_ros.cli import main as cli_main
from uhr_seg_ros.model import load_checkpoint
from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings
from uhr_seg_ros.ros.bag_replay import STORAGES, mask_topic_for, replay_bag

TYPES = get_typestore(Stores.LATEST)
Time = TYPES.types["builtin_interfaces/msg/Time"]
Header = TYPES.types["std_msgs/msg/Header"]
Image = TYPES.types["sensor_msgs/msg/Image"]
CompressedImage = TYPES.types["sensor_msgs/msg/CompressedImage"]
String = TYPES.types["std_msgs/msg/String"]

RAW, COMPRESSED, OTHER = "/cam/image_raw", "/down/image/compressed", "/status"
NUM_CLASSES = 6


def _header(index: int) -> Header:
    return Header(stamp=Time(sec=100 + index, nanosec=1000 * index), frame_id=f"cam_{index}")


def _frame(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _raw(index: int, height: int, width: int, encoding: str = "rgb8") -> bytes:
    pixels = _frame(height, width, index)
    msg = Image(
        header=_header(index),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * 3,
        data=pixels.reshape(-1),
    )
    return TYPES.serialize_cdr(msg, Image.__msgtype__)


def _compressed(index: int, payload: bytes) -> bytes:
    msg = CompressedImage(
        header=_header(index), format="jpeg", data=np.frombuffer(payload, dtype=np.uint8)
    )
    return TYPES.serialize_cdr(msg, CompressedImage.__msgtype__)


def _jpeg(height: int, width: int, seed: int) -> bytes:
    return cv2.imencode(".jpg", _frame(height, width, seed))[1].tobytes()


@pytest.fixture
def recorded_bag(tmp_path: Path, request) -> tuple[Path, dict[str, list]]:
    """A bag with 3 good raw frames, 2 good JPEG frames, 3 corrupt frames and a String topic.

    Returns the bag path and, per image topic, the (bag timestamp, header index, H, W) of the
    frames that must come out as masks.
    """
    storage = getattr(request, "param", "mcap")
    path = tmp_path / f"in_{storage}"
    expected: dict[str, list] = {RAW: [], COMPRESSED: []}
    with Writer(path, version=8, storage_plugin=STORAGES[storage]) as writer:
        raw = writer.add_connection(RAW, Image.__msgtype__, typestore=TYPES)
        compressed = writer.add_connection(COMPRESSED, CompressedImage.__msgtype__, typestore=TYPES)
        other = writer.add_connection(OTHER, String.__msgtype__, typestore=TYPES)
        t = 1_000_000_000
        for i, (h, w) in enumerate([(48, 64), (40, 72), (48, 64)]):
            writer.write(raw, t + i, _raw(i, h, w, "bgr8" if i == 1 else "rgb8"))
            expected[RAW].append((t + i, i, h, w))
        for i, (h, w) in enumerate([(56, 40), (32, 32)], start=10):
            writer.write(compressed, t + i, _compressed(i, _jpeg(h, w, i)))
            expected[COMPRESSED].append((t + i, i, h, w))
        writer.write(raw, t + 20, _raw(20, 48, 64)[:-100])  # truncated CDR
        writer.write(compressed, t + 21, _compressed(21, b"neither JPEG nor PNG"))
        broken = Image(
            header=_header(22),
            height=48,
            width=64,
            encoding="rgb8",
            is_bigendian=0,
            step=64 * 3,
            data=np.zeros(100, np.uint8),
        )
        writer.write(raw, t + 22, TYPES.serialize_cdr(broken, Image.__msgtype__))
        writer.write(other, t + 30, TYPES.serialize_cdr(String(data="ok"), String.__msgtype__))
    return path, expected


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> Segmenter:
    from uhr_seg_ros.model import SGHRQConfig, build_model, save_checkpoint

    path = save_checkpoint(
        tmp_path_factory.mktemp("replay") / "tiny.pt",
        build_model(SGHRQConfig.tiny(num_classes=NUM_CLASSES)),
    )
    settings = SegmenterSettings(backend_order=("cpu",), memory_cap_mb=300, patch_size=64)
    return Segmenter.from_settings(settings, model=load_checkpoint(path))


def _read_masks(bag: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    with Reader(bag) as reader:
        for connection, timestamp, raw in reader.messages():
            assert connection.msgtype == Image.__msgtype__
            out.setdefault(connection.topic, []).append(
                (timestamp, TYPES.deserialize_cdr(raw, connection.msgtype))
            )
    return out


def test_an_inference_failure_loses_only_that_frame(recorded_bag, segmenter, tmp_path, monkeypatch):
    in_bag, _ = recorded_bag
    real_segment, calls = segmenter.segment, []

    def failing_first(image):
        calls.append(image.shape)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_segment(image)

    monkeypatch.setattr(segmenter, "segment", failing_first)
    report = replay_bag(in_bag, tmp_path / "out", segmenter)
    assert (report.frames_read, report.masks_written, report.frames_skipped) == (8, 4, 4)
    assert report.skipped_reasons["inference_failed"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("recorded_bag", ["mcap", "sqlite3"], indirect=True)
def test_replay_writes_one_mask_per_good_frame_with_its_stamp(recorded_bag, segmenter, tmp_path):
    in_bag, expected = recorded_bag
    out_bag = tmp_path / "out"
    report = replay_bag(in_bag, out_bag, segmenter)

    assert report.topics == {RAW: "/cam/image_raw/mask", COMPRESSED: "/down/image/mask"}
    assert (report.frames_read, report.masks_written, report.frames_skipped) == (8, 5, 3)
    assert dict(report.skipped_reasons) == {"undecodable": 1, "corrupt": 1, "truncated": 1}
    masks = _read_masks(out_bag)
    assert set(masks) == {"/cam/image_raw/mask", "/down/image/mask"}
    for topic, frames in expected.items():
        written = masks[mask_topic_for(topic)]
        assert len(written) == len(frames)
        for (timestamp, msg), (want_time, index, height, width) in zip(
            written, frames, strict=False
        ):
            assert timestamp == want_time
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (100 + index, 1000 * index)
            assert msg.header.frame_id == f"cam_{index}"
            assert (msg.height, msg.width, msg.encoding, msg.step) == (
                height,
                width,
                "mono8",
                width,
            )
            assert msg.data.size == height * width
            assert msg.data.max() < NUM_CLASSES
    # The output keeps the input's storage format.
    suffix = ".mcap" if "mcap" in in_bag.name else ".db3"
    assert any(p.suffix == suffix for p in out_bag.iterdir())


def test_topic_selection_and_refusals(recorded_bag, segmenter, tmp_path):
    in_bag, expected = recorded_bag
    report = replay_bag(
        in_bag, tmp_path / "only_jpeg", segmenter, topics=[COMPRESSED], storage="sqlite3"
    )
    assert report.topics == {COMPRESSED: "/down/image/mask"}
    assert report.masks_written == len(expected[COMPRESSED])
    assert set(_read_masks(tmp_path / "only_jpeg")) == {"/down/image/mask"}

    with pytest.raises(ValueError, match=r"no image topic /status .*image topics there: "):
        replay_bag(in_bag, tmp_path / "x", segmenter, topics=[OTHER])
    with pytest.raises(FileExistsError, match="remove it or choose another"):
        replay_bag(in_bag, tmp_path / "only_jpeg", segmenter)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        replay_bag(tmp_path / "missing", tmp_path / "y", segmenter)


def test_mask_topic_names():
    assert mask_topic_for("/cam/image_raw") == "/cam/image_raw/mask"
    assert mask_topic_for("/cam/image_raw/compressed") == "/cam/image_raw/mask"


@pytest.mark.slow
def test_cli_replays_with_a_checkpoint(recorded_bag, tiny_checkpoint, tmp_path, capsys):
    in_bag, expected = recorded_bag
    out_bag = tmp_path / "cli_out"
    code = cli_main(
        [
            "replay",
            str(in_bag),
            "--out",
            str(out_bag),
            "--model",
            str(tiny_checkpoint),
            "--backend",
            "cpu",
            "--memory-cap-mb",
            "300",
            "--topic",
            RAW,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "5 frames read, 3 masks written" in printed
    assert "2 skipped (truncated: 1, undecodable: 1)" in printed
    assert len(_read_masks(out_bag)["/cam/image_raw/mask"]) == len(expected[RAW])
    # A second run refuses to overwrite, before loading any model.
    assert cli_main(["replay", str(in_bag), "--out", str(out_bag)]) == 1
