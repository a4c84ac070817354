"""Scoring a model (plain numpy/torch, no ROS): ``metrics`` (the confusion matrix and IoU) and
``evaluate`` (whole frames through the memory-capped ``Segmenter``, results files).

Import the submodule you need; nothing is imported here so that ``uhr-seg --help`` stays instant.
"""
