"""The ``uhr_seg`` node: image topic in, class mask out, over one :class:`Segmenter`.

A thin adapter (see docs/node.md for the interface) and a managed lifecycle node: ``configure``
builds the Segmenter, ``activate`` starts segmenting, ``cleanup`` frees it. It decodes frames,
hands the newest one to a single worker thread, publishes what the Segmenter returns and counts
everything. The model, tiling and backends live in the core and know nothing about ROS.

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
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from uhr_seg_ros.data.palettes import colorize
from uhr_seg_ros.failures import FrameFailed, segment_frame
from uhr_seg_ros.pipeline import SegmentationResult, Segmenter
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
    read_params,
    segmenter_settings,
)
from uhr_seg_ros.ros.stats import NodeStats

NODE_NAME = "uhr_seg"
#: Rejection reason of a frame that arrived while the node was not active.
INACTIVE = "inactive"
#: Seconds between two log lines about rejected frames (every frame is still counted).
REJECT_LOG_PERIOD_S = 5.0
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
_RELIABILITY = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
}


class FrameRejected(Exception):
    """A frame the node cannot segment; ``reason`` is the statistics code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def topic_qos(reliability: str) -> QoSProfile:
    """Keep-last-1, volatile: only the newest frame or mask matters for a live stream."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=_RELIABILITY[reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


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


class SegNode(LifecycleNode):
    """A managed (lifecycle) node that segments every frame it can keep up with.

    States, as in Nav2 and other GPU-owning ROS 2 nodes (docs/node.md, "Lifecycle"):

    * **unconfigured** (start): parameters declared, ``/diagnostics`` published, no model;
    * ``configure``: read the parameters, load and check the model, pick the backend, get the
      memory model, refuse a cap no plan fits; create the topics. A failure returns FAILURE
      with the reason in the log and on ``/diagnostics``, and the node stays unconfigured: fix
      the parameter (``ros2 param set``) and configure again;
    * **inactive**: frames are received and counted (rejected as ``inactive``), not segmented;
    * ``activate`` / **active**: frames are segmented and masks published;
    * ``deactivate``: stop taking frames, finish the one in flight;
    * ``cleanup``: release the Segmenter (model, engines, device memory) and the topics;
    * ``shutdown`` from any state.

    Args:
        segmenter: an already built Segmenter that ``configure`` uses instead of building one
            (tests, embedding in a larger program); it stays the caller's and is not closed.
        **node_kwargs: passed to :class:`rclpy.node.Node` (``context``, ``parameter_overrides``,
            ``namespace``, ...).

    Raises:
        ParamError: a parameter value is invalid (the message names it).
    """

    def __init__(self, *, segmenter: Segmenter | None = None, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        # State destroy_node() relies on comes first: a failing constructor is cleaned up by it.
        self._segmenter: Segmenter | None = None
        self._injected_segmenter = segmenter  # the caller's: used by configure, never closed
        self._segmenter_lock = threading.Lock()
        self._slot = threading.Condition()
        self._pending: tuple[Any, float] | None = None
        self._active = False
        self._busy = False  # the worker is processing a frame
        self._stopping = False
        self._worker: threading.Thread | None = None
        # rclpy entities, created on configure and destroyed on cleanup (None in between).
        self._image_sub: Any = None
        self._mask_pub: Any = None
        self._color_pub: Any = None
        self._stats_pub: Any = None
        self._stats_timer: Any = None
        self._core_log = logging.getLogger("uhr_seg_ros")
        self._log_bridge = _RosLogHandler(self.get_logger())
        self._core_log.addHandler(self._log_bridge)
        if self._core_log.level == logging.NOTSET:
            self._core_log.setLevel(logging.INFO)

        self.params = declare_params(self)
        self.stats = NodeStats()
        self._lifecycle_state = "unconfigured"
        self._configure_error = ""
        self._last_plan = "no frame segmented yet"
        self._last_rejection = ""
        self._mask_msg, self._color_msg = Image(), Image()
        self._rgb_buffer = np.empty((0, 0, 3), np.uint8)

        # Always reliable: diagnostic aggregators and rqt subscribe reliably. Published in every
        # state, so a failed configure is seen where flight logs look.
        self._diagnostics_pub = self.create_publisher(
            DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS
        )
        self._worker = threading.Thread(target=self._work, name="uhr_seg_worker", daemon=True)
        self._worker.start()
        self._diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.params.autostart:
            self._autostart()

    def _autostart(self) -> None:
        """configure, then activate, as a lifecycle manager would; a failure leaves the node up
        in the state it reached (the reason is logged and on /diagnostics)."""
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # -- lifecycle transitions --------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            params = read_params(self)
            segmenter = self._build_segmenter(params)
        except (OSError, ValueError, RuntimeError) as exc:  # no/corrupt model, no backend, cap
            self._configure_error = f"configure failed: {exc}"
            self.get_logger().error(
                f"{self._configure_error}. The node stays unconfigured; fix the parameter "
                "(ros2 param set) and configure again (ros2 lifecycle set <node> configure)."
            )
            self._publish_diagnostics()
            return TransitionCallbackReturn.FAILURE
        self.params, self._segmenter, self._configure_error = params, segmenter, ""
        self._create_topics()
        self._set_state("inactive")
        self.get_logger().info(
            f"configured: {self._image_sub.topic_name} -> {self._mask_pub.topic_name} with "
            f"{segmenter.describe()}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._slot:
            self._active = True
        self._set_state("active")
        self.get_logger().info("active: segmenting frames")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_taking_frames()
        self._set_state("inactive")
        self.get_logger().info("inactive: frames are counted, not segmented")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._set_state("unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_taking_frames()
        self._release()
        self._set_state("finalized")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_taking_frames()
        self._release()
        self._set_state("unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def _set_state(self, label: str) -> None:
        self._lifecycle_state = label
        self._publish_diagnostics()

    def _build_segmenter(self, params: NodeParams) -> Segmenter:
        """The configured Segmenter; raises with the reason when it cannot be used."""
        injected = self._injected_segmenter
        segmenter = injected or Segmenter.from_settings(segmenter_settings(params))
        try:
            check_against_model(params, segmenter.backend.num_classes)
            segmenter.set_memory_cap(params.memory_cap_mb)  # PlanError when no plan can fit
        except ValueError:
            if injected is None:
                segmenter.close()
            raise
        return segmenter

    def _create_topics(self) -> None:
        out_qos = topic_qos(self.params.output_reliability)
        self._mask_pub = self.create_publisher(Image, "mask", out_qos)
        self._color_pub = self.create_publisher(Image, "mask_color", out_qos)
        self._stats_pub = self.create_publisher(DiagnosticArray, "stats", out_qos)
        compressed = self.params.input_transport == "compressed"
        self._image_sub = self.create_subscription(
            CompressedImage if compressed else Image,
            "image/compressed" if compressed else "image",
            self._on_frame,
            topic_qos(self.params.input_reliability),
        )
        self._schedule_stats(self.params.stats_rate_hz)

    def _stop_taking_frames(self) -> None:
        """Refuse new frames, drop the waiting one, wait for the one in flight to finish."""
        with self._slot:
            self._active = False
            if self._pending is not None:
                self._pending = None
                self.stats.frame_dropped()
            while self._busy:
                self._slot.wait()

    def _release(self) -> None:
        """Destroy the topics and free the Segmenter and the device memory it held."""
        self._schedule_stats(0.0)
        for entity, destroy in (
            (self._image_sub, self.destroy_subscription),
            (self._mask_pub, self.destroy_publisher),
            (self._color_pub, self.destroy_publisher),
            (self._stats_pub, self.destroy_publisher),
        ):
            if entity is not None:
                destroy(entity)
        self._image_sub = self._mask_pub = self._color_pub = self._stats_pub = None
        with self._segmenter_lock:
            segmenter, self._segmenter = self._segmenter, None
        if segmenter is None:
            return
        cuda = segmenter.backend.device.type == "cuda"
        before = torch.cuda.memory_allocated(segmenter.backend.device) if cuda else 0
        if segmenter is not self._injected_segmenter:
            segmenter.close()
            del segmenter
            if cuda:
                torch.cuda.empty_cache()
        if not self.context.ok():
            return  # process shutdown: the log could no longer reach /rosout
        if cuda:
            after = torch.cuda.memory_allocated()
            self.get_logger().info(
                f"cleaned up: CUDA memory allocated {before / 2**20:.0f} MB "
                f"-> {after / 2**20:.0f} MB"
            )
        else:
            self.get_logger().info("cleaned up: model and backend released")

    # -- input ------------------------------------------------------------------------------

    def _on_frame(self, msg: Image | CompressedImage) -> None:
        """Latest frame wins: never blocks on inference. While inactive, frames are counted
        (rejected as ``inactive``) so the accounting stays exact across transitions."""
        self.stats.frame_received()
        with self._slot:
            active = self._active
            replaced = active and self._pending is not None
            if active:
                self._pending = (msg, time.perf_counter())
                self._slot.notify_all()
        if replaced:
            self.stats.frame_dropped()
        if not active:
            self.stats.frame_rejected(INACTIVE)
            if self.params.stats_rate_hz == 0.0:
                self._publish_stats()

    def _next_frame(self) -> tuple[Any, float] | None:
        """Block until a frame waits in the slot; None once the node is stopping."""
        with self._slot:
            while self._pending is None and not self._stopping:
                self._slot.wait()
            if self._stopping:
                return None
            item, self._pending = self._pending, None
            self._busy = True
            return item

    def _work(self) -> None:
        while (item := self._next_frame()) is not None:
            try:
                self._handle(*item)
            except Exception as exc:
                if self._stopping or not self.context.ok():
                    return  # shut down mid-frame: the publishers are gone, nothing to report
                self.get_logger().error(
                    f"publishing stats failed: {type(exc).__name__}: {exc}",
                    throttle_duration_sec=REJECT_LOG_PERIOD_S,
                )
            finally:
                with self._slot:
                    self._busy = False
                    self._slot.notify_all()

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
        timings = {
            ("segment" if stage == "total" else stage): ms
            for stage, ms in result.timings_ms.items()
        }
        timings.update(
            queue=(started - received_at) * 1e3,
            decode=(decoded - started) * 1e3,
            publish=(published - segmented) * 1e3,
            total=(published - received_at) * 1e3,
        )
        self._last_plan = result.plan.describe()
        self._last_rejection = ""
        self.stats.frame_published(timings, result.peak_memory_mb)

    def _segment(self, rgb: np.ndarray) -> SegmentationResult:
        """Segment under the lock, with :func:`~uhr_seg_ros.failures.segment_frame`."""
        with self._segmenter_lock:
            if self._segmenter is None:  # cleaned up while this frame waited for the lock
                raise FrameRejected(INACTIVE, "the node was cleaned up")
            try:  # the core's one failure policy (OOM: free, lower the cap, retry once)
                return segment_frame(self._segmenter, rgb)
            except FrameFailed as exc:
                raise FrameRejected(exc.reason, str(exc)) from exc

    def _reject(self, reason: str, message: str) -> None:
        self.stats.frame_rejected(reason)
        self._last_rejection = f"{reason}: {message}"
        self.get_logger().warning(
            f"frame rejected ({reason}): {message}", throttle_duration_sec=REJECT_LOG_PERIOD_S
        )

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
            return tuple((flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3))
        assert self._segmenter is not None  # frames are rejected before this without one
        return tuple(self._segmenter.palette)

    def _class_names(self) -> tuple[str, ...]:
        assert self._segmenter is not None  # only called with a model loaded
        return self.params.class_names or tuple(self._segmenter.class_names)

    def _status(self) -> DiagnosticStatus:
        state = self._lifecycle_state
        extra = [("lifecycle_state", state)]
        if self._segmenter is None:
            if self._configure_error:
                level, message = DiagnosticStatus.ERROR, self._configure_error
                extra.append(("configure_error", self._configure_error))
            else:
                level, message = DiagnosticStatus.OK, f"{state}: no model loaded"
        else:
            level = DiagnosticStatus.WARN if self._last_rejection else DiagnosticStatus.OK
            message = (
                self.stats.summary()
                if state == "active"
                else f"{state}: frames are counted, not segmented; {self.stats.summary()}"
            )
            extra += [
                ("backend", self._segmenter.backend.describe()),
                ("memory_cap_mb", f"{self._segmenter.settings.memory_cap_mb:.1f}"),
                ("tile_plan", self._last_plan),
                ("classes", ", ".join(f"{i}:{n}" for i, n in enumerate(self._class_names()))),
            ]
        if self._last_rejection:
            extra.append(("last_rejection", self._last_rejection))
        values = self.stats.diagnostic_values(extra)
        return DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: segmentation",
            message=message,
            hardware_id=self._segmenter.backend.describe() if self._segmenter else "none",
            values=[KeyValue(key=k, value=v) for k, v in values],
        )

    def _diagnostic_array(self) -> DiagnosticArray:
        array = DiagnosticArray(status=[self._status()])
        array.header.stamp = self.get_clock().now().to_msg()
        return array

    def _publish_stats(self) -> None:
        publisher = self._stats_pub  # None while unconfigured
        if publisher is not None:
            publisher.publish(self._diagnostic_array())

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
            params = apply_runtime_changes(
                self.params, changes, configured=self._segmenter is not None
            )
            if self._segmenter is not None:
                check_against_model(params, self._segmenter.backend.num_classes)
                # Also when equal to the old value: it restores a cap lowered after an OOM.
                if "memory_cap_mb" in changes:
                    with self._segmenter_lock:  # waits for the frame in progress
                        self._segmenter.set_memory_cap(params.memory_cap_mb)
        except ValueError as exc:  # ParamError, or PlanError: nothing fits the new cap
            return SetParametersResult(successful=False, reason=str(exc))
        if params.stats_rate_hz != self.params.stats_rate_hz and self._stats_pub is not None:
            self._schedule_stats(params.stats_rate_hz)
        self.params = params
        return SetParametersResult(successful=True)

    # -- shutdown ---------------------------------------------------------------------------

    def destroy_node(self) -> None:
        """Stop the worker, free the Segmenter, then the node (whatever the lifecycle state).

        The frame in progress is finished first: the core cannot abort a frame midway, and
        leaving a thread inside torch at interpreter exit aborts the process.
        """
        with self._slot:
            self._stopping = True
            self._active = False
            if self._pending is not None:
                self._pending = None
                self.stats.frame_dropped()
            self._slot.notify_all()
        if self._worker is not None:
            self._worker.join()
        self._release()
        self._core_log.removeHandler(self._log_bridge)
        super().destroy_node()
