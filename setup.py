"""pip-installable ROS-free core; the ROS package itself is built by colcon (see setup.cfg)."""
from setuptools import setup

setup()
