"""NeuFlow optical flow for ROS 2.

The ROS-free core (models, engine, tracker, image conversion) lives in this
package next to the generated message module `neuflow_ros.msg` and the node
(`neuflow_ros.node`); only the node and the tools that talk ROS import rclpy.
"""
from pkgutil import extend_path

# colcon installs the generated `neuflow_ros.msg` into the installed copy of
# this package. When the source tree comes first on sys.path (python -m from
# the checkout, `python -c` in tests) this keeps the installed copy reachable.
__path__ = extend_path(__path__, __name__)

__version__ = '0.1.0'
