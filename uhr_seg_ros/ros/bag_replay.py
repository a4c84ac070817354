"""Offline segmentation of recorded image topics: a rosbag2 of frames in, a rosbag2 of masks out.

Bags are read and written with the pure-Python ``rosbags`` package (mcap and sqlite3 storage), so
no ROS install, no DDS and no running node are needed: frames go straight from the bag to the
core :class:`~uhr_seg_ros.pipeline.Segmenter`, as fast as the backend runs.

Each ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` topic ``T`` becomes a
``sensor_msgs/Image`` topic ``T/mask`` (``T/compressed`` → ``T/mask``) of mono8 class ids with the
input's header (stamp and frame_id) and its bag timestamp, like the live node's ``mask`` topic.
A frame that cannot be used (undecodable message, bad geometry, corrupt JPEG, no tile plan under
the cap) is skipped and counted by reason; the replay goes on.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from uhr_seg_ros.failures import FrameFailed, segment_frame
from uhr_seg_ros.pipeline import Segmenter
from uhr_seg_ros.ros.image_conversion import ImageConversionError, compressed_to_rgb, image_to_rgb
from uhr_seg_ros.ros.params import MAX_FRAME_PIXELS

log = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
DECODERS: dict[str, Callable[..., np.ndarray]] = {
    IMAGE: image_to_rgb,
    COMPRESSED_IMAGE: compressed_to_rgb,
}
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
#: rosbag2 metadata version written: 8 is the oldest rosbags writes (read by Iron and later).
BAG_VERSION: Literal[8] = 8


@dataclass
class ReplayReport:
    """What a replay did; ``frames_read == masks_written + frames_skipped``."""

    #: input topic → output mask topic
    topics: dict[str, str]
    frames_read: int = 0
    masks_written: int = 0
    frames_skipped: int = 0
    #: skip reason (ImageConversionError.reason, ``undecodable``, or a
    #: :mod:`uhr_seg_ros.failures` code such as ``no_plan``, ``out_of_memory``) → count
    skipped_reasons: Counter = field(default_factory=Counter)
    #: Segmenter time summed over written masks, milliseconds
    segment_ms: float = 0.0


def mask_topic_for(topic: str) -> str:
    """``/cam/image_raw`` and ``/cam/image_raw/compressed`` → ``/cam/image_raw/mask``."""
    return topic.removesuffix("/compressed") + "/mask"


def storage_of(bag: Path) -> str:
    """``mcap`` or ``sqlite3``: the storage of an existing bag (a directory or a single file)."""
    if bag.suffix == ".mcap" or any(bag.glob("*.mcap")):
        return "mcap"
    return "sqlite3"


def _select_connections(reader: Reader, topics: Sequence[str] | None) -> list[Any]:
    images = [c for c in reader.connections if c.msgtype in DECODERS]
    if topics:
        available = {c.topic for c in images}
        missing = sorted(set(topics) - available)
        if missing:
            raise ValueError(
                f"no image topic {', '.join(missing)} in {reader.path}; image topics there: "
                f"{', '.join(sorted(available)) or 'none'}"
            )
        images = [c for c in images if c.topic in topics]
    if not images:
        found = ", ".join(sorted(f"{c.topic} ({c.msgtype})" for c in reader.connections))
        raise ValueError(
            f"{reader.path} has no sensor_msgs/Image or CompressedImage topic "
            f"(topics: {found or 'none'})"
        )
    outputs = [mask_topic_for(c.topic) for c in images]
    clashing = sorted({t for t in outputs if outputs.count(t) > 1})
    if clashing:
        raise ValueError(
            f"several input topics would write to {', '.join(clashing)} (raw and "
            "compressed of one camera?); choose one with --topic"
        )
    return images


def replay_bag(
    in_bag: str | Path,
    out_bag: str | Path,
    segmenter: Segmenter,
    *,
    topics: Sequence[str] | None = None,
    storage: str | None = None,
    max_pixels: int | None = MAX_FRAME_PIXELS,
) -> ReplayReport:
    """Segment every frame of the image ``topics`` (all image topics when None) of ``in_bag``
    into a new bag ``out_bag`` (``storage``: ``mcap`` | ``sqlite3``, default the input's).
    Frames over ``max_pixels`` (the node's ``max_frame_pixels`` default; None: no limit) are
    skipped undecoded.

    Raises:
        FileNotFoundError: ``in_bag`` does not exist.
        FileExistsError: ``out_bag`` exists (a replay never overwrites a bag).
        ValueError: no (or no requested) image topic in ``in_bag``, or an unknown storage.
    """
    in_bag, out_bag = Path(in_bag), Path(out_bag)
    if not in_bag.exists():
        raise FileNotFoundError(f"input bag {in_bag} does not exist")
    if out_bag.exists():
        raise FileExistsError(f"output bag {out_bag} exists; remove it or choose another --out")
    storage = storage or storage_of(in_bag)
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    typestore = get_typestore(Stores.LATEST)
    mask_type = typestore.types[IMAGE]

    with Reader(in_bag) as reader:
        inputs = _select_connections(reader, topics)
        report = ReplayReport(topics={c.topic: mask_topic_for(c.topic) for c in inputs})
        writer = Writer(out_bag, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        with writer:
            outputs = {
                c.id: writer.add_connection(mask_topic_for(c.topic), IMAGE, typestore=typestore)
                for c in inputs
            }
            for connection, timestamp, rawdata in reader.messages(connections=inputs):
                report.frames_read += 1
                try:
                    msg: Any = typestore.deserialize_cdr(rawdata, connection.msgtype)
                except Exception as exc:
                    _skip(report, "undecodable", connection.topic, timestamp, exc)
                    continue
                try:
                    rgb = DECODERS[connection.msgtype](msg, max_pixels=max_pixels)
                    result = segment_frame(segmenter, rgb)  # the node's failure policy
                except (ImageConversionError, FrameFailed) as exc:
                    _skip(report, exc.reason, connection.topic, timestamp, exc)
                    continue
                mask = result.mask
                out = mask_type(
                    header=msg.header,
                    height=mask.shape[0],
                    width=mask.shape[1],
                    encoding="mono8",
                    is_bigendian=0,
                    step=mask.shape[1],
                    data=np.ascontiguousarray(mask).reshape(-1),
                )
                writer.write(outputs[connection.id], timestamp, typestore.serialize_cdr(out, IMAGE))
                report.masks_written += 1
                report.segment_ms += result.timings_ms.get("total", 0.0)
    return report


def _skip(report: ReplayReport, reason: str, topic: str, timestamp: int, exc: Exception) -> None:
    report.frames_skipped += 1
    report.skipped_reasons[reason] += 1
    log.warning("skipping %s at t=%d ns (%s): %s", topic, timestamp, reason, exc)
