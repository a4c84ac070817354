"""The uhr_seg node with real rclpy/DDS: in-process with a private Context, and as a process.

Every wait has a deadline (spin_once loops); nothing sleeps blindly. Frames are sent one at a
time and the test waits for each one's outcome, so the counts are exact.
"""

from __future__ import annotations

import array
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not importable (no ROS 2 here)")

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from uhr_seg_ros.failures import OOM_CAP_FACTOR
from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings
from uhr_seg_ros.ros import node as node_module
from uhr_seg_ros.ros.image_conversion import fill_image_msg
from uhr_seg_ros.ros.node import SegNode

pytestmark = pytest.mark.ros
NUM_CLASSES = 6
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="session")
def tiny_segmenter(tiny_checkpoint: Path) -> Segmenter:
    """One CPU Segmenter shared by the in-process tests (its start-up calibration takes seconds)."""
    return Segmenter.from_settings(
        SegmenterSettings(model_path=str(tiny_checkpoint), backend_order=("cpu",))
    )


def image_msg(
    pixels: np.ndarray, encoding: str = "rgb8", frame_id: str = "camera", stamp_s: int = 7
) -> Image:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = stamp_s, 123
    msg = fill_image_msg(Image(), pixels, header)
    msg.encoding = encoding
    return msg


def frame(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def stats_table(array_msg: DiagnosticArray) -> dict[str, str]:
    return {kv.key: kv.value for kv in array_msg.status[0].values}


class Probe:
    """The other side of the node's topics: publishes frames, records what comes back."""

    def __init__(self, context, namespace: str, colour: bool = True) -> None:
        self.node = rclpy.create_node("probe", namespace=namespace, context=context)
        self.images = self.node.create_publisher(Image, "image", RELIABLE)
        self.compressed = self.node.create_publisher(CompressedImage, "image/compressed", RELIABLE)
        self.masks: list[Image] = []
        self.colours: list[Image] = []
        self.stats: list[DiagnosticArray] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.node.create_subscription(Image, "mask", self.masks.append, RELIABLE)
        if colour:
            self.node.create_subscription(Image, "mask_color", self.colours.append, RELIABLE)
        self.node.create_subscription(DiagnosticArray, "stats", self.stats.append, RELIABLE)
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self.diagnostics.append, RELIABLE
        )

    def last_stats(self) -> dict[str, str]:
        return stats_table(self.stats[-1]) if self.stats else {}


def spin_until(executor, predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


class Rig:
    """A SegNode and a Probe in one private Context, spun by one executor."""

    def __init__(
        self, context, namespace: str, segmenter, colour: bool = True, **overrides
    ) -> None:
        overrides.setdefault("input_reliability", "reliable")
        overrides.setdefault("autostart", True)
        self.node = SegNode(
            segmenter=segmenter,
            context=context,
            namespace=namespace,
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        )
        self.probe = Probe(context, namespace, colour=colour)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe.node)
        compressed = overrides.get("input_transport") == "compressed"
        publisher = self.probe.compressed if compressed else self.probe.images

        def discovered() -> bool:
            return (
                publisher.get_subscription_count() > 0
                and self.probe.node.count_publishers(f"{namespace}/mask") > 0
                and (not colour or self.node.count_subscribers(f"{namespace}/mask_color") > 0)
            )

        assert self.spin_until(discovered, 10), "discovery timed out"

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float = 20.0) -> bool:
        return spin_until(self.executor, predicate, timeout_s)

    def send(self, msg, timeout_s: float = 20.0) -> None:
        """Publish one frame and wait until the node has published or rejected it."""
        before = self.node.stats.counts()

        def processed() -> bool:
            now = self.node.stats.counts()
            return (
                now.published + now.rejected > before.published + before.rejected
                and now.in_flight == 0
            )

        (self.probe.compressed if isinstance(msg, CompressedImage) else self.probe.images).publish(
            msg
        )
        assert self.spin_until(processed, timeout_s), (
            f"frame not processed: {self.node.stats.counts()}"
        )

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.probe.node.destroy_node()


@pytest.fixture
def rig(ros_context, tiny_segmenter, request):
    rigs: list[Rig] = []

    def make(segmenter=tiny_segmenter, **kwargs) -> Rig:
        rigs.append(Rig(ros_context, f"/{request.node.name.split('[')[0]}", segmenter, **kwargs))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def assert_accounting(counts) -> None:
    assert counts.received == counts.published + counts.dropped + counts.rejected + counts.in_flight


def test_frame_in_mask_and_colour_out_with_the_input_header(rig, tiny_segmenter):
    r = rig()
    pixels = frame()
    r.send(image_msg(pixels[..., ::-1].copy(), "bgr8", frame_id="cam_down", stamp_s=42))
    assert r.spin_until(lambda: r.probe.masks and r.probe.colours and r.probe.stats)
    mask, colour = r.probe.masks[0], r.probe.colours[0]
    for out in (mask, colour):
        assert (out.height, out.width) == (48, 64)
        assert out.header.frame_id == "cam_down"
        assert (out.header.stamp.sec, out.header.stamp.nanosec) == (42, 123)
    assert mask.encoding == "mono8" and colour.encoding == "rgb8"
    assert max(mask.data) < NUM_CLASSES
    # the mask is the Segmenter's mask for the RGB frame (bgr8 was converted at the boundary)
    expected = tiny_segmenter.segment(pixels).mask
    np.testing.assert_array_equal(np.frombuffer(mask.data, np.uint8).reshape(48, 64), expected)
    table = r.probe.last_stats()
    assert table["frames_received"] == "1" and table["frames_published"] == "1"
    assert table["backend"].startswith("cpu") and "64x48" in table["tile_plan"]
    for stage in ("queue", "decode", "infer", "merge", "publish", "total"):
        assert float(table[f"latency_{stage}_p99_ms"]) >= 0.0
    assert float(table["latency_total_p50_ms"]) >= float(table["latency_infer_p50_ms"])


@pytest.mark.parametrize("subscribed, publish_color", [(False, True), (True, False)])
def test_colour_is_computed_only_when_subscribed_and_enabled(
    rig, monkeypatch, subscribed, publish_color
):
    calls = []

    def counting_colorize(mask, *args, **kwargs):
        calls.append(mask.shape)
        return np.zeros((*mask.shape, 3), np.uint8)

    monkeypatch.setattr(node_module, "colorize", counting_colorize)
    r = rig(colour=subscribed, publish_color=publish_color)
    r.send(image_msg(frame()))
    assert r.node.stats.counts().published == 1 and not calls


def test_bad_frames_are_rejected_counted_and_the_next_one_is_processed(rig):
    r = rig(max_frame_pixels=100 * 100)
    good = image_msg(frame())
    unknown = image_msg(frame(), "yuv422")
    step = image_msg(frame())
    step.step = 64 * 3 - 1
    empty = image_msg(frame())
    empty.height, empty.width, empty.data = 0, 0, array.array("B")
    truncated = image_msg(frame())
    truncated.data = array.array("B", bytes(truncated.data)[:-100])
    huge = Image(height=30000, width=30000, encoding="rgb8", step=90000)
    for bad in (unknown, step, empty, truncated, huge):
        r.send(bad)
    r.send(good)
    counts = r.node.stats.counts()
    assert (counts.received, counts.rejected, counts.published) == (6, 5, 1)
    assert_accounting(counts)
    assert r.node.stats.rejections() == {
        "unknown_encoding": 1,
        "step_mismatch": 1,
        "zero_size": 1,
        "truncated": 1,
        "too_large": 1,
    }
    assert r.spin_until(lambda: r.probe.last_stats().get("frames_received") == "6")
    table = r.probe.last_stats()
    assert table["rejected_truncated"] == "1" and table["frames_rejected"] == "5"


def test_compressed_transport_survives_a_corrupt_jpeg(rig):
    r = rig(input_transport="compressed")
    jpeg = cv2.imencode(".jpg", frame())[1]
    corrupt = CompressedImage(
        format="jpeg", data=array.array("B", b"\xff\xd8\xff\xe0broken\xff\xd9")
    )
    r.send(corrupt)
    good = CompressedImage(format="jpeg", data=array.array("B", jpeg.tobytes()))
    good.header.frame_id = "cam_jpeg"
    r.send(good)
    assert r.node.stats.rejections() == {"corrupt": 1}
    assert r.spin_until(lambda: bool(r.probe.masks))
    assert r.probe.masks[0].header.frame_id == "cam_jpeg"
    assert (r.probe.masks[0].height, r.probe.masks[0].width) == (48, 64)


def test_a_newer_frame_replaces_the_waiting_one(rig, tiny_segmenter, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real_segment = tiny_segmenter.segment

    def slow_segment(image):
        entered.set()
        assert release.wait(20), "test never released the worker"
        return real_segment(image)

    monkeypatch.setattr(tiny_segmenter, "segment", slow_segment)
    r = rig()
    r.probe.images.publish(image_msg(frame(seed=1)))
    assert r.spin_until(entered.is_set)
    for seed, received in ((2, 2), (3, 3)):
        r.probe.images.publish(image_msg(frame(seed=seed)))
        assert r.spin_until(lambda n=received: r.node.stats.counts().received == n)
    release.set()
    assert r.spin_until(lambda: r.node.stats.counts().in_flight == 0)
    counts = r.node.stats.counts()
    assert (counts.published, counts.dropped, counts.rejected) == (2, 1, 0)


def test_cuda_out_of_memory_lowers_the_cap_and_retries_once(rig, tiny_segmenter, monkeypatch):
    real_segment, cap = tiny_segmenter.segment, tiny_segmenter.settings.memory_cap_mb
    failures = iter([True])

    def oom_once(image):
        if next(failures, False):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real_segment(image)

    monkeypatch.setattr(tiny_segmenter, "segment", oom_once)
    r = rig()
    try:
        r.send(image_msg(frame()))
        assert r.node.stats.counts().published == 1
        assert tiny_segmenter.settings.memory_cap_mb == pytest.approx(cap * OOM_CAP_FACTOR)
        assert r.spin_until(
            lambda: r.probe.last_stats().get("memory_cap_mb") == f"{cap * OOM_CAP_FACTOR:.1f}"
        )
        # setting the configured value again restores it once the GPU is free again
        (result,) = r.node.set_parameters([Parameter("memory_cap_mb", value=cap)])
        assert result.successful and tiny_segmenter.settings.memory_cap_mb == cap
    finally:
        tiny_segmenter.set_memory_cap(cap)


def test_inference_failures_are_rejected_and_the_node_carries_on(rig, tiny_segmenter, monkeypatch):
    real_segment = tiny_segmenter.segment
    outcomes = iter(
        [
            torch.cuda.OutOfMemoryError("again"),
            torch.cuda.OutOfMemoryError("again"),
            RuntimeError("cuDNN exploded"),
        ]
    )
    cap = tiny_segmenter.settings.memory_cap_mb

    def failing(image):
        error = next(outcomes, None)
        if error is not None:
            raise error
        return real_segment(image)

    monkeypatch.setattr(tiny_segmenter, "segment", failing)
    r = rig()
    try:
        r.send(image_msg(frame()))  # OOM, replan, OOM again: rejected
        r.send(image_msg(frame()))  # any other exception: rejected
    finally:
        tiny_segmenter.set_memory_cap(cap)
    assert r.node.stats.rejections() == {"out_of_memory": 1, "inference_failed": 1}
    assert r.spin_until(lambda: r.probe.last_stats().get("frames_rejected") == "2")
    status = r.probe.stats[-1].status[0]
    assert status.level == DiagnosticStatus.WARN
    assert "cuDNN exploded" in stats_table(r.probe.stats[-1])["last_rejection"]
    r.send(image_msg(frame()))
    assert r.node.stats.counts().published == 1
    assert r.spin_until(lambda: r.probe.last_stats().get("frames_published") == "1")
    assert r.probe.stats[-1].status[0].level == DiagnosticStatus.OK


def test_runtime_parameters_are_applied_or_refused_with_a_reason(rig, tiny_segmenter):
    cap = tiny_segmenter.settings.memory_cap_mb
    r = rig()
    r.send(image_msg(frame()))
    try:
        (result,) = r.node.set_parameters([Parameter("memory_cap_mb", value=900)])
        assert result.successful and tiny_segmenter.settings.memory_cap_mb == 900.0
        (result,) = r.node.set_parameters([Parameter("memory_cap_mb", value=0.001)])
        assert not result.successful and "cap" in result.reason
        assert tiny_segmenter.settings.memory_cap_mb == 900.0  # old cap kept
        (result,) = r.node.set_parameters([Parameter("overlay_alpha", value=2.0)])
        assert not result.successful and "overlay_alpha" in result.reason
        (result,) = r.node.set_parameters([Parameter("model_path", value="/other.pt")])
        assert not result.successful and "restart" in result.reason
        (result,) = r.node.set_parameters([Parameter("palette", value=[1, 2, 3])])
        assert not result.successful and "6 classes" in result.reason
        (result,) = r.node.set_parameters([Parameter("overlay_alpha", value=1.0)])
        assert result.successful and r.node.params.overlay_alpha == 1.0
        assert r.node.get_parameter("overlay_alpha").value == 1.0
    finally:
        tiny_segmenter.set_memory_cap(cap)
    r.send(image_msg(frame()))  # alpha 1.0: colours only, no image blended in
    assert r.spin_until(lambda: len(r.probe.colours) == 2)
    colour = np.frombuffer(r.probe.colours[1].data, np.uint8).reshape(48, 64, 3)
    palette = np.array(tiny_segmenter.palette, np.uint8)
    mask = np.frombuffer(r.probe.masks[1].data, np.uint8).reshape(48, 64)
    np.testing.assert_array_equal(colour, palette[mask])


def test_stats_at_a_fixed_rate_without_frames_and_rate_change_at_run_time(rig):
    r = rig(stats_rate_hz=20.0)
    assert r.spin_until(lambda: len(r.probe.stats) >= 3, 5)
    assert r.probe.last_stats()["frames_received"] == "0"
    (result,) = r.node.set_parameters([Parameter("stats_rate_hz", value=0.0)])
    assert result.successful
    r.send(image_msg(frame()))  # now one stats message per frame
    assert r.spin_until(lambda: r.probe.last_stats().get("frames_published") == "1")


class LifecycleClient:
    """Drives a node through its lifecycle services, as ``ros2 lifecycle set/get`` does."""

    def __init__(self, probe: Probe, executor, node_name: str) -> None:
        from lifecycle_msgs.srv import ChangeState, GetState

        self.executor = executor
        self._change = probe.node.create_client(ChangeState, f"{node_name}/change_state")
        self._get = probe.node.create_client(GetState, f"{node_name}/get_state")
        assert spin_until(
            executor, lambda: self._change.service_is_ready() and self._get.service_is_ready(), 10
        ), "lifecycle services missing"

    def _call(self, client, request):
        future = client.call_async(request)
        assert spin_until(self.executor, future.done, 60), "lifecycle service did not answer"
        return future.result()

    def set(self, label: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        return self._call(
            self._change, ChangeState.Request(transition=Transition(label=label))
        ).success

    def get(self) -> str:
        from lifecycle_msgs.srv import GetState

        return self._call(self._get, GetState.Request()).current_state.label

    def wait_until(self, label: str, timeout_s: float = 30.0) -> bool:
        """The node's subscription exists from configure on; frames sent before it is active
        are counted and dropped by design, so a test waits for ``active`` before sending."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.get() == label:
                return True
            time.sleep(0.1)
        return False


def test_lifecycle_failed_configure_then_fixed_parameter_then_every_transition(
    ros_context, tiny_segmenter, tiny_checkpoint, tmp_path
):
    namespace = "/lifecycle"
    node = SegNode(
        context=ros_context,
        namespace=namespace,
        parameter_overrides=[
            Parameter("model_path", value=str(tmp_path / "missing.pt")),
            Parameter("backend_order", value=["cpu"]),
            Parameter("input_reliability", value="reliable"),
        ],
    )
    probe = Probe(ros_context, namespace, colour=False)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(probe.node)
    try:
        lifecycle = LifecycleClient(probe, executor, f"{namespace}/uhr_seg")
        assert lifecycle.get() == "unconfigured"  # autostart is off: waits for a manager
        # configure fails: FAILURE, reason on /diagnostics, node still up and unconfigured
        assert not lifecycle.set("configure")
        assert lifecycle.get() == "unconfigured"
        assert spin_until(
            executor, lambda: any("missing.pt" in d.status[0].message for d in probe.diagnostics), 5
        )
        status = next(d.status[0] for d in probe.diagnostics if "missing.pt" in d.status[0].message)
        assert status.level == DiagnosticStatus.ERROR and "model_path" in status.message
        # a cap no plan can meet is a configure failure too, naming the cap that would fit
        for name, value in (("model_path", str(tiny_checkpoint)), ("memory_cap_mb", 0.001)):
            (result,) = node.set_parameters([Parameter(name, value=value)])
            assert result.successful, result.reason  # unconfigured: start-up values may change
        assert not lifecycle.set("configure")
        assert (
            "raise memory_cap_mb to at least"
            in stats_table(probe.diagnostics[-1])["configure_error"]
        )
        (result,) = node.set_parameters([Parameter("memory_cap_mb", value=1500.0)])
        assert result.successful
        assert lifecycle.set("configure") and lifecycle.get() == "inactive"
        assert spin_until(
            executor,
            lambda: (
                probe.images.get_subscription_count() > 0
                and probe.node.count_publishers(f"{namespace}/mask") > 0
            ),
            10,
        )
        # configured: the model-picking parameters are fixed, a cap nothing fits is refused
        (result,) = node.set_parameters([Parameter("model_path", value="/other.pt")])
        assert not result.successful and "cleanup" in result.reason
        (result,) = node.set_parameters([Parameter("memory_cap_mb", value=0.001)])
        assert not result.successful and "smallest tile plan" in result.reason

        def outcome(published: int, rejected: int) -> bool:
            counts = node.stats.counts()
            return (counts.published, counts.rejected, counts.in_flight) == (published, rejected, 0)

        probe.images.publish(image_msg(frame()))  # inactive: counted, not segmented
        assert spin_until(executor, lambda: outcome(0, 1), 20)
        assert lifecycle.set("activate") and lifecycle.get() == "active"
        probe.images.publish(image_msg(frame(), frame_id="after_activate"))
        assert spin_until(executor, lambda: outcome(1, 1) and bool(probe.masks), 30)
        assert probe.masks[-1].header.frame_id == "after_activate"
        assert lifecycle.set("deactivate") and lifecycle.get() == "inactive"
        probe.images.publish(image_msg(frame()))
        assert spin_until(executor, lambda: outcome(1, 2), 20)
        assert node.stats.rejections() == {"inactive": 2} and len(probe.masks) == 1
        assert_accounting(node.stats.counts())
        assert lifecycle.set("cleanup") and lifecycle.get() == "unconfigured"
        assert node._segmenter is None  # released (closed: it was built by configure)
        assert spin_until(
            executor, lambda: probe.node.count_publishers(f"{namespace}/mask") == 0, 10
        )
        assert lifecycle.set("shutdown") and lifecycle.get() == "finalized"
    finally:
        executor.shutdown()
        node.destroy_node()
        probe.node.destroy_node()


def test_deactivate_finishes_the_frame_in_flight(rig, tiny_segmenter, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real_segment = tiny_segmenter.segment

    def slow_segment(image):
        entered.set()
        assert release.wait(20), "test never released the worker"
        return real_segment(image)

    monkeypatch.setattr(tiny_segmenter, "segment", slow_segment)
    r = rig()
    r.probe.images.publish(image_msg(frame(), frame_id="in_flight"))
    assert r.spin_until(entered.is_set)
    threading.Timer(0.5, release.set).start()
    assert r.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS  # waits for it
    counts = r.node.stats.counts()
    assert (counts.published, counts.in_flight) == (1, 0)
    assert r.spin_until(lambda: bool(r.probe.masks))
    assert r.probe.masks[0].header.frame_id == "in_flight"
    # an injected Segmenter stays the caller's: cleanup does not close it
    assert r.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert tiny_segmenter.segment(frame()).mask.shape == (48, 64)


def test_misspelt_parameter_is_named_with_the_closest_valid_name(
    ros_context, tiny_segmenter, capfd
):
    node = SegNode(
        segmenter=tiny_segmenter,
        context=ros_context,
        namespace="/typo",
        parameter_overrides=[Parameter("memory_cap_mbb", value=900.0)],
    )
    try:
        assert node.params.memory_cap_mb == 1500.0
    finally:
        node.destroy_node()
    err = capfd.readouterr().err
    assert (
        err.count("unknown parameter 'memory_cap_mbb' is ignored; did you mean 'memory_cap_mb'?")
        == 1
    ), err


# -- across processes ---------------------------------------------------------------------------

NODE_START_TIMEOUT_S = 90.0


class NodeProcess:
    """``python -m uhr_seg_ros.seg_node`` in a child process, output captured to a file."""

    def __init__(self, tmp_path: Path, namespace: str, ros_args: list[str]) -> None:
        self.log_path = tmp_path / "node.log"
        with self.log_path.open("w") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uhr_seg_ros.seg_node",
                    "--ros-args",
                    "-r",
                    f"__ns:={namespace}",
                    "-p",
                    "autostart:=true",
                    *ros_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log_path.read_text()

    def interrupt(self, timeout_s: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def node_process(tmp_path):
    started: list[NodeProcess] = []

    def start(namespace: str, ros_args: list[str]) -> NodeProcess:
        started.append(NodeProcess(tmp_path, namespace, ros_args))
        return started[-1]

    yield start
    for process in started:
        process.kill()


def wait_for_stats(
    executor, probe: Probe, process: NodeProcess, key: str, value: str, timeout_s: float = 60.0
) -> dict[str, str]:
    assert spin_until(executor, lambda: probe.last_stats().get(key) == value, timeout_s), (
        f"stats never showed {key}={value}; last: {probe.last_stats()}\n{process.output()}"
    )
    return probe.last_stats()


def set_parameter(executor, client, name: str, value) -> tuple[bool, str]:
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    future = client.call_async(request)
    assert spin_until(executor, future.done, 30), "parameter service did not answer"
    result = future.result().results[0]
    return result.successful, result.reason


@pytest.mark.slow
def test_node_process_segments_a_deepglobe_frame_and_survives_bad_input(
    ros_context, node_process, tiny_checkpoint, deepglobe_dir, tmp_path
):
    namespace = "/xproc_raw"
    params_file = tmp_path / "seg.yaml"
    params_file.write_text(
        "/**:\n  ros__parameters:\n"
        f"    model_path: '{tiny_checkpoint}'\n"
        "    backend_order: [cpu]\n"
        "    input_reliability: reliable\n"  # 18 MB frames over default transports
        "    max_frame_pixels: 6000000\n"
        "    class_names: [urban, agriculture, rangeland, forest, water, barren]\n"
    )
    process = node_process(namespace, ["--params-file", str(params_file)])
    probe = Probe(ros_context, namespace)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(probe.node)
    parameters = probe.node.create_client(SetParameters, f"{namespace}/uhr_seg/set_parameters")
    try:
        assert spin_until(
            executor, lambda: probe.images.get_subscription_count() > 0, NODE_START_TIMEOUT_S
        ), f"node never subscribed:\n{process.output()}"
        assert LifecycleClient(probe, executor, f"{namespace}/uhr_seg").wait_until("active")
        assert spin_until(executor, parameters.service_is_ready, 10)
        assert spin_until(
            executor,
            lambda: (
                probe.node.count_subscribers(f"{namespace}/mask_color") > 0
                and probe.node.count_publishers(f"{namespace}/mask") > 0
            ),
            10,
        )

        sat = min(deepglobe_dir.glob("*_sat.jpg"))
        bgr = cv2.imread(str(sat), cv2.IMREAD_COLOR)
        probe.images.publish(image_msg(bgr, "bgr8", frame_id="uav_cam", stamp_s=1234))
        table = wait_for_stats(executor, probe, process, "frames_published", "1", 120)
        assert spin_until(executor, lambda: probe.masks and probe.colours, 20)
        mask = probe.masks[0]
        assert (mask.height, mask.width, mask.encoding) == (2448, 2448, "mono8")
        assert mask.header.frame_id == "uav_cam" and mask.header.stamp.sec == 1234
        assert int(np.frombuffer(mask.data, np.uint8).max()) < NUM_CLASSES
        colour = probe.colours[0]
        assert (colour.height, colour.width, colour.encoding) == (2448, 2448, "rgb8")
        assert colour.header.frame_id == "uav_cam"
        assert (table["frames_received"], table["frames_dropped"], table["frames_rejected"]) == (
            "1",
            "0",
            "0",
        )
        assert "2448x2448" in table["tile_plan"] and table["backend"].startswith("cpu")
        assert table["classes"].startswith("0:urban, 1:agriculture")  # from the params file
        assert float(table["latency_total_p50_ms"]) > 0

        unknown = image_msg(frame(), "yuv422")
        step = image_msg(frame())
        step.step = 10
        empty = Image(encoding="rgb8")
        truncated = image_msg(frame())
        truncated.data = array.array("B", bytes(truncated.data)[:1000])
        huge = Image(height=3000, width=3000, encoding="rgb8", step=9000)  # over 6 MP
        for rejected, bad in enumerate((unknown, step, empty, truncated, huge), start=1):
            probe.images.publish(bad)
            wait_for_stats(executor, probe, process, "frames_rejected", str(rejected))
        probe.images.publish(image_msg(frame()))
        table = wait_for_stats(executor, probe, process, "frames_published", "2")
        assert table["frames_received"] == "7" and table["frames_rejected"] == "5"
        for reason in ("unknown_encoding", "step_mismatch", "zero_size", "truncated", "too_large"):
            assert table[f"rejected_{reason}"] == "1", table

        assert set_parameter(executor, parameters, "memory_cap_mb", 1200) == (True, "")
        ok, reason = set_parameter(executor, parameters, "memory_cap_mb", -3.0)
        assert not ok and "memory_cap_mb" in reason
        ok, reason = set_parameter(executor, parameters, "backend_order", ["cuda"])
        assert not ok and "restart" in reason
        probe.images.publish(image_msg(frame()))
        table = wait_for_stats(executor, probe, process, "frames_published", "3")
        assert table["memory_cap_mb"] == "1200.0"
        assert probe.diagnostics and probe.diagnostics[-1].status[0].name == "uhr_seg: segmentation"

        assert process.interrupt() == 0, process.output()
        assert "Traceback" not in process.output()
    finally:
        executor.shutdown()
        probe.node.destroy_node()


@pytest.mark.slow
def test_node_process_on_the_compressed_transport(
    ros_context, node_process, tiny_checkpoint, deepglobe_dir
):
    namespace = "/xproc_jpeg"
    process = node_process(
        namespace,
        [
            "-p",
            f"model_path:={tiny_checkpoint}",
            "-p",
            "backend_order:=[cpu]",
            "-p",
            "input_transport:=compressed",
            "-p",
            "input_reliability:=reliable",
        ],
    )
    probe = Probe(ros_context, namespace, colour=False)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(probe.node)
    try:
        assert spin_until(
            executor, lambda: probe.compressed.get_subscription_count() > 0, NODE_START_TIMEOUT_S
        ), f"node never subscribed:\n{process.output()}"
        assert LifecycleClient(probe, executor, f"{namespace}/uhr_seg").wait_until("active")
        assert spin_until(
            executor, lambda: probe.node.count_publishers(f"{namespace}/mask") > 0, 10
        )
        jpeg_bytes = min(deepglobe_dir.glob("*_sat.jpg")).read_bytes()
        cut_off = jpeg_bytes[: len(jpeg_bytes) // 50]  # header intact, scan data cut off
        for rejected, data in enumerate((cut_off, b"\xff\xd8\xff\xe0garbage\xff\xd9"), 1):
            probe.compressed.publish(CompressedImage(format="jpeg", data=array.array("B", data)))
            wait_for_stats(executor, probe, process, "frames_rejected", str(rejected))
        good = CompressedImage(format="jpeg", data=array.array("B", jpeg_bytes))
        good.header.frame_id = "uav_cam_jpeg"
        probe.compressed.publish(good)
        table = wait_for_stats(executor, probe, process, "frames_published", "1", 120)
        assert spin_until(executor, lambda: bool(probe.masks), 20)
        assert (probe.masks[0].height, probe.masks[0].width) == (2448, 2448)
        assert probe.masks[0].header.frame_id == "uav_cam_jpeg"
        assert (table["rejected_truncated"], table["rejected_corrupt"]) == ("1", "1")
        assert int(table["frames_received"]) == int(table["frames_published"]) + int(
            table["frames_rejected"]
        ) + int(table["frames_dropped"])
        # Ctrl-C while (most likely) a frame is being segmented: still a clean exit.
        probe.compressed.publish(good)
        assert process.interrupt(timeout_s=120) == 0, process.output()
        assert "Traceback" not in process.output()
        assert "terminate called" not in process.output()
    finally:
        executor.shutdown()
        probe.node.destroy_node()


def test_invalid_parameter_at_start_exits_2_naming_it():
    """A misconfiguration fails loudly at launch: exit code 2, one line naming the parameter."""
    result = subprocess.run(
        [sys.executable, "-m", "uhr_seg_ros.seg_node", "--ros-args", "-p", "memory_cap_mb:=-5.0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "memory_cap_mb" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "does not exist"),
        ("/**:\n  ros__parameters:\n    memory_cap_mb: [1\n", "is not valid YAML at line 4"),
    ],
)
def test_missing_or_malformed_params_file_is_one_line_and_exit_2(tmp_path, content, expected):
    params_file = tmp_path / "seg.yaml"
    if content is not None:
        params_file.write_text(content)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uhr_seg_ros.seg_node",
            "--ros-args",
            "--params-file",
            str(params_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and str(params_file) in lines[0] and expected in lines[0], lines
