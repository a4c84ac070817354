"""Run jobs on Ray: one :class:`~.worker.SegmentWorker` actor per worker, files queued over them.

Each actor loads the model once and is fed the next file as soon as it returns one, so fast
and slow files (a PNG, a 40k² mosaic) balance themselves. An actor that dies (killed for
memory, a node lost) costs only the file it held: that file is recorded as failed and a new
actor takes its place. Ray's own scheduler places actors: ``num_gpus`` per actor makes them
spread over the GPUs of a node or a cluster.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uhr_seg_ros.geo import require

from .jobs import Job, Record

if TYPE_CHECKING:
    from uhr_seg_ros.pipeline import SegmenterSettings

log = logging.getLogger(__name__)

#: How often an actor is replaced after dying before the run gives up on workers.
MAX_RESTARTS = 3


@dataclass(frozen=True)
class ClusterOptions:
    #: None: start a local cluster on this machine; "auto" or "ray://host:10001": join one
    address: str | None = None
    workers: int = 1
    #: GPUs each actor reserves (fractions share a GPU); None: 1 if the cluster has GPUs
    gpus_per_worker: float | None = None
    #: CPUs each actor reserves (and torch threads it uses); None: CPUs / workers
    cpus_per_worker: float | None = None


def connect(options: ClusterOptions) -> tuple[Any, bool]:
    """``(ray, started)``: the ray module, connected; ``started`` if this call started it."""
    ray = require("ray", extra="batch")
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if options.address:
        ray.init(address=options.address, **kwargs)
    else:
        cpus = options.cpus_per_worker * options.workers if options.cpus_per_worker else None
        ray.init(num_cpus=max(cpus or os.cpu_count() or 1, 1), **kwargs)
    return ray, True


def run_jobs(
    jobs: Sequence[Job],
    settings: SegmenterSettings,
    raster_options: argparse.Namespace,
    options: ClusterOptions,
    on_record: Callable[[Record], None],
) -> None:
    """Segment every job on the cluster; ``on_record`` gets each record as it arrives."""
    from uhr_seg_ros.batch.worker import SegmentWorker

    ray, started = connect(options)
    try:
        resources = ray.cluster_resources()
        gpus = options.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        cpus = options.cpus_per_worker or max(1.0, resources.get("CPU", 1) // options.workers)
        actor_class = ray.remote(num_cpus=cpus, num_gpus=gpus)(SegmentWorker)
        log.info(
            "Ray cluster %s: %d worker(s), %g CPU and %g GPU each",
            {k: resources[k] for k in ("CPU", "GPU") if k in resources},
            options.workers,
            cpus,
            gpus,
        )

        def start_actors(count: int) -> list[Any]:
            """Actors with their model loaded (in parallel); a :class:`ValueError` saying why
            if they cannot start (bad checkpoint, no backend): every file would fail alike."""
            started = [
                actor_class.remote(settings, raster_options, threads=int(cpus))
                for _ in range(count)
            ]
            try:
                for line in ray.get([actor.describe.remote() for actor in started]):
                    log.info("worker up: %s", line)
            except ray.exceptions.RayActorError as exc:
                raise ValueError(f"a batch worker could not start: {_reason(exc)}") from None
            return started

        actors = start_actors(min(options.workers, len(jobs)))
        queue = list(reversed(jobs))
        running: dict[Any, tuple[Any, Job]] = {}

        def feed(actor: Any) -> None:
            if queue:
                job = queue.pop()
                running[actor.process.remote(job)] = (actor, job)

        for actor in actors:
            feed(actor)
        restarts = 0
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            actor, job = running.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:  # the process died (e.g. OOM-killed)
                record = Record(
                    job.input,
                    job.output,
                    "error",
                    reason=f"worker died on this file: {_reason(exc)}",
                )
                if restarts == MAX_RESTARTS:
                    raise ValueError(
                        f"{MAX_RESTARTS} batch workers died; last on {job.input}: {_reason(exc)}"
                    ) from None
                restarts += 1
                actor = start_actors(1)[0]
            except ray.exceptions.RayTaskError as exc:
                record = Record(job.input, job.output, "error", reason=_reason(exc))
            on_record(record)
            feed(actor)
    finally:
        if started:
            ray.shutdown()


def _reason(exc: Exception) -> str:
    """One line out of a Ray error: the last ``SomeError: message`` line of its traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head:
            return line[:300]
    return (lines[-1] if lines else type(exc).__name__)[:300]
