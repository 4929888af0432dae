"""Resident memory of the lifecycle node over many configure/activate/deactivate/cleanup cycles.

A system manager that switches flow off and on (or frees and reloads the
engine) for hours must not make the node grow. This script drives the real
lifecycle node process over DDS through ``--cycles`` full cycles with NeuFlow
on the CPU (random weights in the official checkpoint format), computes a few
flows in every activation and reads the process's VmRSS after each cleanup.

It runs the node twice, side by side in one run: as shipped, and with
MALLOC_ARENA_MAX=2 (glibc then cannot give new threads new malloc arenas),
the reference for "memory does not grow because of arenas". Growth is
reported in MB (median of the last cycles against the first, since single
cycles jump by tens of MB) and as the ratio of the two runs' late medians.

    python benchmarks/lifecycle_memory.py --cycles 30 [--size 640x480] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from neuflow_ros.tools.graph_processes import ChildProcess, graph_environment, node_command

os.environ.update(graph_environment())  # before rclpy: the same domain as the node

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from neuflow_ros.msg import OpticalFlow
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from neuflow_ros.imaging.image_conversion import rgb_to_image_payload
from neuflow_ros.imaging.synthetic_sequence import textured_image
from neuflow_ros.node.ros_messages import image_msg, time_msg
from neuflow_ros.tools.engine_benchmark import write_random_checkpoint

NAMESPACE = f"/lifecycle_memory_{os.getpid()}"
SERVICE_TIMEOUT_S = 60.0
LATE_CYCLES = 10
"""RSS after one cycle jumps by tens of MB either way; the late level is their median."""
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                      reliability=ReliabilityPolicy.RELIABLE)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


class Manager:
    """The lifecycle manager and camera, in this process."""

    def __init__(self, run: str, size: tuple[int, int]) -> None:
        self.node = rclpy.create_node(f"lifecycle_memory_{run}")
        self.prefix = f"{NAMESPACE}_{run}"
        self.client = self.node.create_client(ChangeState, f"{self.prefix}/neuflow/change_state")
        self.camera = self.node.create_publisher(Image, f"{self.prefix}/image", RELIABLE)
        self.flows: list[int] = []
        self.node.create_subscription(
            OpticalFlow, f"{self.prefix}/neuflow/flow",
            lambda msg: self.flows.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec),
            RELIABLE,
        )
        width, height = size
        self.frames = [textured_image(width, height), textured_image(width, height, (1.0, 0.5))]
        self.stamps = itertools.count(10**9, 50_000_000)

    def change(self, transition: int) -> None:
        if not self.client.wait_for_service(timeout_sec=SERVICE_TIMEOUT_S):
            raise RuntimeError("the node's change_state service did not appear")
        request = ChangeState.Request()
        request.transition.id = transition
        future = self.client.call_async(request)
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=SERVICE_TIMEOUT_S)
        if future.result() is None or not future.result().success:
            raise RuntimeError(f"transition {transition} failed")

    def compute_flows(self, count: int) -> None:
        """Send frames until ``count`` flows came back (the node drops while busy)."""
        wanted = len(self.flows) + count
        deadline = time.monotonic() + SERVICE_TIMEOUT_S
        for index in itertools.count():
            if len(self.flows) >= wanted:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("no flow came back")
            stamp = next(self.stamps)
            header = Header(stamp=time_msg(stamp), frame_id="camera")
            self.camera.publish(
                image_msg(header, rgb_to_image_payload(self.frames[index % 2]))
            )
            rclpy.spin_once(self.node, timeout_sec=0.3)


def run_cycles(run: str, extra_env: dict[str, str], args: argparse.Namespace,
               checkpoint: Path, folder: Path) -> list[float]:
    manager = Manager(run, args.size)
    command = [*node_command("neuflow_lifecycle_node"), "--ros-args",
               "-r", f"__ns:={manager.prefix}", "-p", f"backend:={args.backend}",
               "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu",
               "-p", "input_qos.reliability:=reliable"]
    node = ChildProcess(run, command, {**os.environ, **extra_env}, folder / f"{run}.log")
    resident = []
    try:
        for cycle in range(args.cycles):
            manager.change(Transition.TRANSITION_CONFIGURE)
            manager.change(Transition.TRANSITION_ACTIVATE)
            manager.compute_flows(args.flows)
            manager.change(Transition.TRANSITION_DEACTIVATE)
            manager.change(Transition.TRANSITION_CLEANUP)
            resident.append(resident_mb(node.process.pid))
            print(f"{run}: cycle {cycle + 1}: {resident[-1]:.1f} MB", flush=True)
    except RuntimeError as error:
        raise node.failure(str(error)) from error
    finally:
        node.stop()
        manager.node.destroy_node()
    return resident


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--flows", type=int, default=3, help="flows per activation")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--backend", default="neuflow_v1", choices=["neuflow_v1", "neuflow_v2"])
    parser.add_argument("--out", type=Path, default=None, help="folder for lifecycle_memory.json")
    args = parser.parse_args()
    args.size = tuple(int(value) for value in args.size.split("x"))
    rclpy.init()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = write_random_checkpoint(args.backend, Path(folder))
        for run, extra_env in (("shipped", {}), ("arena_max_2", {"MALLOC_ARENA_MAX": "2"})):
            resident = run_cycles(run, extra_env, args, checkpoint, Path(folder))
            late = statistics.median(resident[-LATE_CYCLES:])
            results[run] = {"resident_mb": resident, "late_median_mb": late,
                            "growth_mb": late - resident[0], "max_mb": max(resident)}
    rclpy.shutdown()
    for run, result in results.items():
        print(f"{run}: {result['resident_mb'][0]:.1f} MB after cycle 1, median "
              f"{result['late_median_mb']:.1f} MB over the last "
              f"{min(LATE_CYCLES, args.cycles)} cycles "
              f"(growth {result['growth_mb']:+.1f} MB), max {result['max_mb']:.1f} MB")
    print(f"late median ratio shipped / MALLOC_ARENA_MAX=2: "
          f"{results['shipped']['late_median_mb'] / results['arena_max_2']['late_median_mb']:.3f}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "lifecycle_memory.json").write_text(json.dumps(
            {"cycles": args.cycles, "size": list(args.size), "backend": args.backend,
             "flows_per_activation": args.flows, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
