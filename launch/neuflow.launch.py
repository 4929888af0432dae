"""Start the neuflow node with the shipped parameters and the Fast DDS large-data profile.

For real ROS 2 installs (Humble, Jazzy, Kilted):
    ros2 launch neuflow_ros neuflow.launch.py image:=/camera/image_raw \
        camera_info:=/camera/camera_info backend:=neuflow_v2 checkpoint:=/path/neuflow_mixed.pth

lifecycle:=true starts the managed variant (neuflow_lifecycle_node): it loads
nothing until a manager (`ros2 lifecycle set /neuflow configure`, nav2's
lifecycle_manager, ...) configures and activates it.

backend, checkpoint and device override params_file only when given, so a
params file stays the single source of truth otherwise. image / camera_info
remap the topics of the default single camera; for several cameras list them
in the params file (`cameras`) and remap <name>/image instead. A stereo pair
named left and right in the params file (`cameras: [left, right]`,
`stereo.pair: [left, right]`) is wired with left_image, left_camera_info,
right_image and right_camera_info:
    ros2 launch neuflow_ros neuflow.launch.py params_file:=stereo.yaml \
        left_image:=/camera/camera/infra1/image_rect_raw \
        left_camera_info:=/camera/camera/infra1/camera_info \
        right_image:=/camera/camera/infra2/image_rect_raw \
        right_camera_info:=/camera/camera/infra2/camera_info
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from neuflow_ros.node.fastdds_profile import profile_environment

EXECUTABLES = {"false": "neuflow_node", "true": "neuflow_lifecycle_node"}
"""Executable for each value of the lifecycle argument."""


def _launch_node(context, *_args, **_kwargs):
    """Builds the actions once the argument values are known (optional overrides)."""
    overrides = {}
    for name in ("backend", "checkpoint", "device"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    lifecycle = LaunchConfiguration("lifecycle").perform(context).strip().lower()
    if lifecycle not in EXECUTABLES:
        raise ValueError(f"launch argument 'lifecycle' must be true or false, got '{lifecycle}'")
    actions = []
    profile = LaunchConfiguration("fastdds_profile").perform(context)
    if profile:
        # Only the variable the installed Fast DDS reads (2.x and 3.x read different ones).
        actions += [SetEnvironmentVariable(variable, value)
                    for variable, value in profile_environment(profile).items()]
    actions.append(
        Node(
            package="neuflow_ros",
            executable=EXECUTABLES[lifecycle],
            name="neuflow",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=[
                ("image", LaunchConfiguration("image")),
                ("camera_info", LaunchConfiguration("camera_info")),
                ("left/image", LaunchConfiguration("left_image")),
                ("left/camera_info", LaunchConfiguration("left_camera_info")),
                ("right/image", LaunchConfiguration("right_image")),
                ("right/camera_info", LaunchConfiguration("right_camera_info")),
            ],
            output="screen",
            emulate_tty=True,
        )
    )
    return actions


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("neuflow_ros")
    return LaunchDescription([
        DeclareLaunchArgument(
            "image", default_value="image",
            description="Camera image topic (sensor_msgs/Image; with transport "
                        "'compressed' the node subscribes to <image>/compressed).",
        ),
        DeclareLaunchArgument(
            "camera_info", default_value="camera_info",
            description="CameraInfo topic of the camera.",
        ),
        DeclareLaunchArgument(
            "left_image", default_value="left/image",
            description="Image topic of the camera named 'left' in `cameras` (stereo).",
        ),
        DeclareLaunchArgument(
            "left_camera_info", default_value="left/camera_info",
            description="CameraInfo topic of the camera named 'left' in `cameras` (stereo).",
        ),
        DeclareLaunchArgument(
            "right_image", default_value="right/image",
            description="Image topic of the camera named 'right' in `cameras` (stereo).",
        ),
        DeclareLaunchArgument(
            "right_camera_info", default_value="right/camera_info",
            description="CameraInfo topic of the camera named 'right' in `cameras` (stereo).",
        ),
        DeclareLaunchArgument(
            "namespace", default_value="", description="Namespace of the node.",
        ),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "neuflow.yaml"),
            description="Parameters file (key /**/neuflow).",
        ),
        DeclareLaunchArgument(
            "backend", default_value="",
            description="dis, neuflow_v2 or neuflow_v1; empty = from params_file.",
        ),
        DeclareLaunchArgument(
            "checkpoint", default_value="",
            description="NeuFlow checkpoint file; empty = from params_file.",
        ),
        DeclareLaunchArgument(
            "device", default_value="",
            description="auto, cpu, cuda or cuda:N; empty = from params_file.",
        ),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=os.path.join(share, "config", "fastdds_profile.xml"),
            description="Fast DDS XML profile for large images between processes "
                        "(shared memory); empty = leave the environment alone.",
        ),
        DeclareLaunchArgument(
            "lifecycle", default_value="false",
            description="true: the managed (lifecycle) node, which waits for configure and "
                        "activate; false: the plain node, which starts at once.",
        ),
        OpaqueFunction(function=_launch_node),
    ])
