"""NeuFlow optical flow for ROS 2.

The data path, one subpackage per step (imports run only in this order):

    tools -> node -> (flow, tracking) -> (imaging, models)

`imaging` turns camera payloads and files into arrays, `models` holds the
networks, `flow` computes dense flow, `tracking` turns flow into tracks,
`node` is the ROS 2 adapter and `tools` are the command-line programs: only
these two import rclpy. colcon installs the generated messages next
to these as `neuflow_ros.msg`.
"""
from pkgutil import extend_path

# colcon installs the generated `neuflow_ros.msg` into the installed copy of
# this package. When the source tree comes first on sys.path (python -m from
# the checkout, `python -c` in tests) this keeps the installed copy reachable.
__path__ = extend_path(__path__, __name__)

__version__ = '0.1.0'
