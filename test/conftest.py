"""Test-session isolation for everything that touches DDS.

Set before any test imports rclpy, so that parallel runs on one machine (two
CI jobs, a developer's demo) never discover each other, and so that rclpy
writes its logs into the session's temporary folder instead of ~/.ros.
"""
import os
import tempfile

import pytest

_session_log_dir = tempfile.mkdtemp(prefix='neuflow_ros_test_logs_')
os.environ['ROS_LOG_DIR'] = _session_log_dir
os.environ.setdefault('ROS_DOMAIN_ID', str(10 + os.getpid() % 90))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'


@pytest.fixture(scope='module')
def harness(request):
    """One rclpy participant per test module, named after it, for talking to node processes.

    Imported here, not at the top: rclpy must see the environment set above.
    """
    from ros_test_support import RosHarness

    ros = RosHarness(request.module.__name__.rpartition('.')[2])
    yield ros
    ros.close()
