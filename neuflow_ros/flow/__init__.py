"""The flow engine: frames in, dense optical flow out, on the CPU or a GPU.

Lives here: the engine API (`engine`), its NeuFlow and DIS backends, checkpoint
loading, host/device transfer, CUDA graphs, per-camera stream encodings, frame
geometry (padding and resizing to the network grid), the flow result types
and the ONNX export.

May import: `neuflow_ros.models` and `neuflow_ros.imaging`, torch, numpy and
OpenCV. Never rclpy or the generated messages: the engine runs in notebooks,
offline tools and other frameworks as it runs in the node.
"""
