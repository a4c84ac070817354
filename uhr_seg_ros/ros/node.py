"""The ``uhr_seg`` node: image topic in, class mask out, over one :class:`Segmenter`.

A thin adapter (see docs/node.md for the interface): it decodes frames, hands the newest one to
a single worker thread, publishes what the Segmenter returns and counts everything. The model,
tiling and backends live in the core and know nothing about ROS.

Threading: the subscription callback only swaps the frame into a depth-1 slot (latest frame
wins; a frame replaced before the worker took it counts as dropped) and never waits for
inference. The worker owns decoding, segmentation and publishing. Parameter changes that touch
the Segmenter take the same lock as the worker, so they apply between two frames.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from uhr_seg_ros.data.palettes import colorize
from uhr_seg_ros.pipeline import SegmentationResult, Segmenter, SegmenterSettings
from uhr_seg_ros.ros.image_conversion import (
    ImageConversionError,
    compressed_to_rgb,
    fill_image_msg,
    image_to_rgb,
)
from uhr_seg_ros.ros.params import (
    NodeParams,
    apply_runtime_changes,
    check_against_model,
    declare_params,
)
from uhr_seg_ros.ros.stats import NodeStats

NODE_NAME = "uhr_seg"
#: After a CUDA out-of-memory error the cap is lowered to this fraction and the frame retried.
OOM_CAP_FACTOR = 0.75
#: Seconds between two log lines about rejected frames (every frame is still counted).
REJECT_LOG_PERIOD_S = 5.0
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
_RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT,
                "reliable": ReliabilityPolicy.RELIABLE}


class FrameRejected(Exception):
    """A frame the node cannot segment; ``reason`` is the statistics code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def topic_qos(reliability: str) -> QoSProfile:
    """Keep-last-1, volatile: only the newest frame or mask matters for a live stream."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=_RELIABILITY[reliability],
                      durability=DurabilityPolicy.VOLATILE)


def segmenter_settings(params: NodeParams) -> SegmenterSettings:
    """The core's settings for these parameters (the ROS sentinels 0/-1 become None)."""
    return SegmenterSettings(
        model_path=params.model_path or None, backend_order=params.backend_order,
        precision=params.precision, memory_cap_mb=params.memory_cap_mb,
        patch_size=params.patch_size or None,
        overlap=None if params.overlap < 0 else params.overlap,
        batch_size=params.batch_size or None)


class _RosLogHandler(logging.Handler):
    """Forwards the core's Python log records (backend fallback, tile plans) to the ROS log."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        message = f"[{record.name}] {record.getMessage()}"
        if record.levelno >= logging.ERROR:
            self._ros_logger.error(message)
        elif record.levelno >= logging.WARNING:
            self._ros_logger.warning(message)
        elif record.levelno >= logging.INFO:
            self._ros_logger.info(message)
        else:
            self._ros_logger.debug(message)


class SegNode(Node):
    """Segments every frame it can keep up with and publishes ``mask``, ``mask_color``, ``stats``.

    Args:
        segmenter: an already built Segmenter (tests, embedding in a larger program); None
            builds one from the parameters. A model that cannot be loaded does not stop the
            node: it stays up, reports the error on ``/diagnostics`` and rejects frames with
            reason ``model_unavailable``.
        **node_kwargs: passed to :class:`rclpy.node.Node` (``context``, ``parameter_overrides``,
            ``namespace``, ...).

    Raises:
        ParamError: a parameter value is invalid (the message names it).
    """

    def __init__(self, *, segmenter: Segmenter | None = None, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        # State destroy_node() relies on comes first: a failing constructor is cleaned up by it.
        self._segmenter: Segmenter | None = None
        self._owns_segmenter = False
        self._slot = threading.Condition()
        self._pending: tuple[Any, float] | None = None
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._core_log = logging.getLogger("uhr_seg_ros")
        self._log_bridge = _RosLogHandler(self.get_logger())
        self._core_log.addHandler(self._log_bridge)
        if self._core_log.level == logging.NOTSET:
            self._core_log.setLevel(logging.INFO)

        self.params = declare_params(self)
        self.stats = NodeStats()
        self._segmenter_lock = threading.Lock()
        self._model_error = ""
        self._owns_segmenter = segmenter is None  # an injected Segmenter stays the caller's
        self._segmenter = segmenter if segmenter is not None else self._build_segmenter()
        if self._segmenter is not None:
            check_against_model(self.params, self._segmenter.backend.num_classes)
        self._last_plan = "no frame segmented yet"
        self._last_rejection = ""

        out_qos = topic_qos(self.params.output_reliability)
        self._mask_pub = self.create_publisher(Image, "mask", out_qos)
        self._color_pub = self.create_publisher(Image, "mask_color", out_qos)
        self._stats_pub = self.create_publisher(DiagnosticArray, "stats", out_qos)
        # Always reliable: diagnostic aggregators and rqt subscribe reliably.
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics",
                                                      DIAGNOSTICS_QOS)
        self._mask_msg, self._color_msg = Image(), Image()
        self._rgb_buffer = np.empty((0, 0, 3), np.uint8)

        compressed = self.params.input_transport == "compressed"
        self._image_sub = self.create_subscription(
            CompressedImage if compressed else Image, "image/compressed" if compressed else "image",
            self._on_frame, topic_qos(self.params.input_reliability))

        self._worker = threading.Thread(target=self._work, name="uhr_seg_worker", daemon=True)
        self._worker.start()

        self._diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics)
        self._stats_timer = None
        self._schedule_stats(self.params.stats_rate_hz)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        if self._segmenter is not None:
            self.get_logger().info(
                f"segmenting {self._image_sub.topic_name} -> {self._mask_pub.topic_name} "
                f"with {self._segmenter.describe()}")

    # -- start-up ---------------------------------------------------------------------------

    def _build_segmenter(self) -> Segmenter | None:
        try:
            return Segmenter.from_settings(segmenter_settings(self.params))
        except (OSError, ValueError, RuntimeError) as exc:  # missing/corrupt model, no backend
            self._model_error = f"model not loaded: {exc}"
            self.get_logger().error(
                f"{self._model_error}. The node stays up and rejects frames; restart it with a "
                "valid model_path (see docs/node.md).")
            return None

    # -- input ------------------------------------------------------------------------------

    def _on_frame(self, msg: Image | CompressedImage) -> None:
        """Latest frame wins: never blocks on inference."""
        self.stats.frame_received()
        with self._slot:
            replaced = self._pending is not None
            self._pending = (msg, time.perf_counter())
            self._slot.notify()
        if replaced:
            self.stats.frame_dropped()

    def _next_frame(self) -> tuple[Any, float] | None:
        """Block until a frame waits in the slot; None once the node is stopping."""
        with self._slot:
            while self._pending is None and not self._stopping:
                self._slot.wait()
            if self._stopping:
                return None
            item, self._pending = self._pending, None
            return item

    def _work(self) -> None:
        while (item := self._next_frame()) is not None:
            try:
                self._handle(*item)
            except Exception as exc:  # noqa: BLE001 - a dead worker would stop the node silently
                if self._stopping or not self.context.ok():
                    return  # shut down mid-frame: the publishers are gone, nothing to report
                self.get_logger().error(f"publishing stats failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=REJECT_LOG_PERIOD_S)

    def _handle(self, msg: Image | CompressedImage, received_at: float) -> None:
        """Process one frame (any failure rejects this frame only), then report per frame."""
        try:
            self._process(msg, received_at)
        except FrameRejected as exc:
            self._reject(exc.reason, str(exc))
        except Exception as exc:  # the worker must outlive any one frame
            if self._stopping or not self.context.ok():
                raise
            self._reject("inference_failed", f"{type(exc).__name__}: {exc}")
        if self.params.stats_rate_hz == 0.0:
            self._publish_stats()

    def _decode(self, msg: Image | CompressedImage) -> np.ndarray:
        max_pixels = self.params.max_frame_pixels
        try:
            if isinstance(msg, CompressedImage):
                return compressed_to_rgb(msg, max_pixels=max_pixels)
            if self._rgb_buffer.shape[:2] != (msg.height, msg.width) and msg.encoding != "rgb8":
                self._rgb_buffer = np.empty((msg.height, msg.width, 3), np.uint8)
            return image_to_rgb(msg, max_pixels=max_pixels, out=self._rgb_buffer)
        except ImageConversionError as exc:
            raise FrameRejected(exc.reason, str(exc)) from exc

    def _process(self, msg: Image | CompressedImage, received_at: float) -> None:
        started = time.perf_counter()
        rgb = self._decode(msg)
        decoded = time.perf_counter()
        result = self._segment(rgb)
        segmented = time.perf_counter()
        self._publish_masks(msg.header, rgb, result.mask)
        published = time.perf_counter()
        timings = {("segment" if stage == "total" else stage): ms
                   for stage, ms in result.timings_ms.items()}
        timings.update(queue=(started - received_at) * 1e3, decode=(decoded - started) * 1e3,
                       publish=(published - segmented) * 1e3,
                       total=(published - received_at) * 1e3)
        self._last_plan = result.plan.describe()
        self._last_rejection = ""
        self.stats.frame_published(timings, result.peak_memory_mb)

    def _segment(self, rgb: np.ndarray) -> SegmentationResult:
        """Segment under the lock; on CUDA out-of-memory free the cache, lower the cap, retry once."""
        if self._segmenter is None:
            raise FrameRejected("model_unavailable", self._model_error)
        with self._segmenter_lock:
            try:
                return self._segmenter.segment(rgb)
            except torch.cuda.OutOfMemoryError as exc:
                torch.cuda.empty_cache()
                cap = self._segmenter.settings.memory_cap_mb
                try:
                    self._segmenter.set_memory_cap(cap * OOM_CAP_FACTOR)
                except ValueError as plan_exc:
                    raise FrameRejected("out_of_memory", f"CUDA out of memory at a {cap:.0f} MB "
                                        f"cap and no smaller plan fits: {plan_exc}") from exc
                self.get_logger().warning(
                    f"CUDA out of memory at a {cap:.0f} MB cap; lowered the cap to "
                    f"{cap * OOM_CAP_FACTOR:.0f} MB and retrying the frame (other processes may "
                    "be using the GPU; set memory_cap_mb to what is really free)")
                try:
                    return self._segmenter.segment(rgb)
                except torch.cuda.OutOfMemoryError as again:
                    torch.cuda.empty_cache()
                    raise FrameRejected("out_of_memory", f"CUDA out of memory again at "
                                        f"{cap * OOM_CAP_FACTOR:.0f} MB: {again}") from again

    def _reject(self, reason: str, message: str) -> None:
        self.stats.frame_rejected(reason)
        self._last_rejection = f"{reason}: {message}"
        self.get_logger().warning(f"frame rejected ({reason}): {message}",
                                  throttle_duration_sec=REJECT_LOG_PERIOD_S)

    # -- output -----------------------------------------------------------------------------

    def _publish_masks(self, header: Any, rgb: np.ndarray, mask: np.ndarray) -> None:
        self._mask_pub.publish(fill_image_msg(self._mask_msg, mask, header))
        if not self.params.publish_color or self._color_pub.get_subscription_count() == 0:
            return
        alpha = self.params.overlay_alpha
        colour = colorize(mask, self._palette(), image=None if alpha >= 1.0 else rgb, alpha=alpha)
        self._color_pub.publish(fill_image_msg(self._color_msg, colour, header))

    def _palette(self) -> tuple[tuple[int, int, int], ...]:
        flat = self.params.palette
        if flat:
            return tuple(tuple(flat[i:i + 3]) for i in range(0, len(flat), 3))
        return tuple(self._segmenter.palette)

    def _class_names(self) -> tuple[str, ...]:
        return self.params.class_names or tuple(self._segmenter.class_names)

    def _status(self) -> DiagnosticStatus:
        if self._segmenter is None:
            level, message = DiagnosticStatus.ERROR, self._model_error
            extra = [("model_error", self._model_error)]
        else:
            level = DiagnosticStatus.WARN if self._last_rejection else DiagnosticStatus.OK
            message = self.stats.summary()
            extra = [
                ("backend", self._segmenter.backend.describe()),
                ("memory_cap_mb", f"{self._segmenter.settings.memory_cap_mb:.1f}"),
                ("tile_plan", self._last_plan),
                ("classes", ", ".join(f"{i}:{n}" for i, n in enumerate(self._class_names()))),
            ]
        if self._last_rejection:
            extra.append(("last_rejection", self._last_rejection))
        values = self.stats.diagnostic_values(extra)
        return DiagnosticStatus(
            level=level, name=f"{self.get_name()}: segmentation", message=message,
            hardware_id=self._segmenter.backend.describe() if self._segmenter else "none",
            values=[KeyValue(key=k, value=v) for k, v in values])

    def _diagnostic_array(self) -> DiagnosticArray:
        array = DiagnosticArray(status=[self._status()])
        array.header.stamp = self.get_clock().now().to_msg()
        return array

    def _publish_stats(self) -> None:
        self._stats_pub.publish(self._diagnostic_array())

    def _publish_diagnostics(self) -> None:
        self._diagnostics_pub.publish(self._diagnostic_array())

    def _schedule_stats(self, rate_hz: float) -> None:
        if self._stats_timer is not None:
            self.destroy_timer(self._stats_timer)
            self._stats_timer = None
        if rate_hz > 0:
            self._stats_timer = self.create_timer(1.0 / rate_hz, self._publish_stats)

    # -- run-time parameters ----------------------------------------------------------------

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Apply safe changes (cap, colours, limits, stats rate); refuse the rest with a reason."""
        changes = {p.name: p.value for p in parameters}
        try:
            params = apply_runtime_changes(self.params, changes)
            if self._segmenter is not None:
                check_against_model(params, self._segmenter.backend.num_classes)
                # Also when equal to the old value: it restores a cap lowered after an OOM.
                if "memory_cap_mb" in changes:
                    with self._segmenter_lock:  # waits for the frame in progress
                        self._segmenter.set_memory_cap(params.memory_cap_mb)
        except ValueError as exc:  # ParamError, or PlanError: nothing fits the new cap
            return SetParametersResult(successful=False, reason=str(exc))
        if params.stats_rate_hz != self.params.stats_rate_hz:
            self._schedule_stats(params.stats_rate_hz)
        self.params = params
        return SetParametersResult(successful=True)

    # -- shutdown ---------------------------------------------------------------------------

    def destroy_node(self) -> None:
        """Stop the worker, free the Segmenter, then the node.

        The frame in progress is finished first: the core cannot abort a frame midway, and
        leaving a thread inside torch at interpreter exit aborts the process.
        """
        with self._slot:
            self._stopping = True
            if self._pending is not None:
                self._pending = None
                self.stats.frame_dropped()
            self._slot.notify()
        if self._worker is not None:
            self._worker.join()
        if self._segmenter is not None and self._owns_segmenter:
            self._segmenter.close()
        self._core_log.removeHandler(self._log_bridge)
        super().destroy_node()

