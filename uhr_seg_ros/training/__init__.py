"""Training SGHRQ (plain torch, no ROS): one module per concern.

``config`` (the YAML schema), ``crops`` (what each step sees, resumable mid-epoch), ``losses``,
``distributed`` (single process or ``torchrun``), ``logs`` (CSV + TensorBoard), ``checkpoints``
(resumable state and the inference weights) and ``loop`` (:func:`~uhr_seg_ros.training.loop.train`).
Import the submodule you need; nothing heavy is imported here so that ``uhr-seg --help`` stays
instant.
"""


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, incompatible resume file); the message says what to do."""
