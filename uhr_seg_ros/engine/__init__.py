"""Training, evaluation, metrics and losses (plain torch, no ROS).

Import the submodule you need (``uhr_seg_ros.engine.metrics``, ``.evaluate``, ``.losses``,
``.train``); nothing is imported here so that ``uhr-seg --help`` stays instant.
"""
