"""ROS 2 adapters: message conversion, statistics, parameters and the segmentation node.

The only package (with ``uhr_seg_ros.seg_node``) that imports rclpy; the modules that do not
need it (``image_conversion``, ``stats``, ``params``) import without a ROS install.
"""
