"""Small conversions between ROS message fields and plain Python values.

Shared by the node's flow and track outputs so both build stamps and images
the same way.
"""

from __future__ import annotations

from array import array

from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Header


def stamp_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def time_msg(stamp_ns_value: int) -> Time:
    sec, nanosec = divmod(stamp_ns_value, 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def image_msg(header: Header, payload: tuple[int, int, str, int, memoryview]) -> Image:
    """Image from an image_conversion payload (height, width, encoding, step, data)."""
    height, width, encoding, step, data = payload
    # frombytes copies any buffer with one memcpy; rclpy takes array('B') as it is,
    # while a bytes object would be converted (and checked) element by element.
    pixels = array("B")
    pixels.frombytes(data)
    return Image(
        header=header, height=height, width=width, encoding=encoding,
        is_bigendian=0, step=step, data=pixels,
    )
