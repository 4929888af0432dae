"""Pixels and files: the bottom layer that everything else reads and writes through.

Lives here: camera image conversion (ROS encodings, Bayer, YUV, JPEG/PNG
payloads to arrays), flow colour rendering, .flo and KITTI flow files, the
synthetic scene with known motion, and frame sources (image folders, videos).

May import: numpy and OpenCV only; nothing else of this package, never rclpy
or the generated messages.
"""
