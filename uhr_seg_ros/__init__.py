"""uhr_seg_ros: memory-capped ultra-high-resolution segmentation for UAV imagery.

The core (model, tiling, backends, data, engine) is plain Python + torch and never imports ROS;
``uhr_seg_ros.ros`` and ``uhr_seg_ros.seg_node`` are the only ROS adapters.
"""

__version__ = "0.1.0"
