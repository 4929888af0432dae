"""Sparse feature tracks with persistent IDs, built on dense flow.

Lives here: the tracker (flow-advanced tracks, forward-backward and epipolar
checks, Lucas-Kanade refinement), corner detection, patch gathering and
bilinear sampling, the pinhole/fisheye camera model, the VINS-Fusion feature
layout, stereo matching and the track drawing.

May import: `neuflow_ros.imaging`, numpy and OpenCV. Never rclpy or the
generated messages, and not the flow engine: the tracker takes flow as an
array, whichever engine (or another program) computed it.
"""
