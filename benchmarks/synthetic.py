"""Synthetic scene generation speed and memory: ``generate_scene(size, seed)`` wall time.

    .venv/bin/python benchmarks/synthetic.py --size 2048 --seeds 0 1 2
    .venv/bin/python benchmarks/synthetic.py --size 5000 --seeds 0

Run one size per process: the peak resident memory reported (``ru_maxrss``) is the process's.
Also prints CPU time, which is less sensitive than wall time to other load on the machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

from uhr_seg_ros.data.synthetic import generate_scene


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    walls, cpus = [], []
    for seed in args.seeds:
        wall, cpu = time.perf_counter(), time.process_time()
        generate_scene(args.size, seed=seed)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"size {args.size}² seeds {args.seeds}: wall median {statistics.median(walls):.2f} s "
        f"(min {min(walls):.2f}, max {max(walls):.2f}), CPU median "
        f"{statistics.median(cpus):.2f} s, peak RSS {peak_mb:.0f} MB, "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
