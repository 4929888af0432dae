"""The command-line programs and what only they use.

Lives here: neuflow-bag (bag, folder and video processing and its I/O),
neuflow-bench (engine and end-to-end benchmarks and their report),
neuflow-demo and the process graph it starts, neuflow-replay (a camera from
a scene, folder or video), the flow consumer, neuflow-export-onnx, and their
shared command-line helpers.

May import: every other layer of this package. Nothing else imports this one.
"""
