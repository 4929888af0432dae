"""The ROS 2 adapter: the only layer that talks to rclpy and the generated messages.

Lives here: the node and the lifecycle node, the pipeline they share,
parameters, diagnostics, the frame intake (ROS messages to frames), the
per-camera mailbox and stream, the worker thread that runs the engine, the
track outputs and the message builders.

May import: rclpy, the messages, `neuflow_ros.flow`, `neuflow_ros.tracking`,
`neuflow_ros.imaging` and `neuflow_ros.models`. Never `neuflow_ros.tools`.
"""
