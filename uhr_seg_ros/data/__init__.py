"""Data sets, palettes and the synthetic scene generator (plain numpy/OpenCV, no ROS)."""
