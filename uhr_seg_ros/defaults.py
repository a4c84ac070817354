"""Defaults shared by the core, the CLI and the node.

No heavy imports: the CLI parser uses them, and ``uhr-seg --help`` must stay instant.
"""

#: Backends tried in order, best first (see uhr_seg_ros.backends).
BACKEND_ORDER: tuple[str, ...] = ("tensorrt", "cuda", "cpu")

#: Device memory cap in MB: the paper's small limit (1.5 GB), which fits a Jetson Orin beside the
#: rest of a flight stack.
MEMORY_CAP_MB: float = 1500.0
