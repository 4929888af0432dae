"""The processes of a measured graph: how to start them, watch them and always stop them.

The node runs as the installed executable with the environment the launch
file would give it; the replay tells over stdout when it is ready and which
stamp each frame got, so the consumer can pair flows with frames exactly.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..node.fastdds_profile import ALL_PROFILE_VARIABLES, profile_environment

STOP_TIMEOUT_S = 5.0
_LOG_LINE = re.compile(r"^\[(WARN|ERROR|FATAL)\]\s*(?:\[[^\]]*\]\s*)*:?\s*(.*)$")


class GraphRunError(RuntimeError):
    """The graph could not be measured (a process failed or timed out); the message says why."""


def _package_path(*parts: str) -> Path:
    """A file of the installed package share folder, else of this source tree."""
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        installed = Path(get_package_share_directory("neuflow_ros")).joinpath(*parts)
        if installed.exists():
            return installed
    except (ImportError, PackageNotFoundError):
        pass
    return Path(__file__).resolve().parents[2].joinpath(*parts)


NODE_MODULES = {
    "neuflow_node": "neuflow_ros.node.flow_node",
    "neuflow_lifecycle_node": "neuflow_ros.node.lifecycle_node",
}
"""Installed executable -> the module it runs, for a source tree that is not built (yet)."""


def node_command(executable_name: str = "neuflow_node") -> list[str]:
    """The installed executable (what `ros2 run` starts), else the module from this tree."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        prefix = Path(get_package_prefix("neuflow_ros"))
        executable = prefix / "lib" / "neuflow_ros" / executable_name
        if executable.exists():
            return [sys.executable, str(executable)]
    except (ImportError, PackageNotFoundError):
        pass
    return [sys.executable, "-m", NODE_MODULES[executable_name]]


def graph_environment() -> dict[str, str]:
    """Variables every process of the run needs on top of the caller's environment.

    Mirrors launch/neuflow.launch.py: the Fast DDS profile for large frames,
    in the variable the installed Fast DDS reads (unless the user set one).
    A domain of its own unless the user chose one.
    """
    env: dict[str, str] = {}
    if not any(os.environ.get(variable) for variable in ALL_PROFILE_VARIABLES):
        env.update(profile_environment(str(_package_path("config", "fastdds_profile.xml"))))
    if "ROS_DOMAIN_ID" not in os.environ:
        # 20..99: clear of the default 0 and of the UDP ports domains above 101 would need.
        env["ROS_DOMAIN_ID"] = str(20 + os.getpid() % 80)
        env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return env


class ChildProcess:
    """A process of the graph that is always stopped: SIGINT first (clean exit), then kill."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path,
                 pipes: bool = False) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE if pipes else self._log,
            stderr=self._log if pipes else subprocess.STDOUT,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
        )

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def failure(self, what: str) -> GraphRunError:
        tail = "\n".join(self.log_text().splitlines()[-20:])
        return GraphRunError(f"{self.name} {what}; its output ({self.log_path}):\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self._log.close()


class ReplayMonitor:
    """Reads the replay's stdout: 'ready', 'frame INDEX STAMP_NS' per frame, 'sent N'."""

    def __init__(self, stdout: IO[bytes]) -> None:
        self.ready = threading.Event()
        self.index_by_stamp: dict[int, int] = {}
        self.sent: int | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stdout,), daemon=True)
        self._thread.start()

    def _read(self, stdout: IO[bytes]) -> None:
        for raw in stdout:
            words = raw.decode(errors="replace").split()
            if words == ["ready"]:
                self.ready.set()
            elif len(words) == 3 and words[0] == "frame":
                with self._lock:
                    self.index_by_stamp[int(words[2])] = int(words[1])
            elif len(words) == 2 and words[0] == "sent":
                self.sent = int(words[1])

    def index_of(self, stamp: int) -> int | None:
        with self._lock:
            return self.index_by_stamp.get(stamp)

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


def wait_until(condition: Callable[[], bool], timeout_s: float,
          watched: tuple[ChildProcess, ...] = ()) -> bool:
    """Polls ``condition``; raises when a watched process exits early (with its output)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for child in watched:
            if child.process.poll() is not None:
                raise child.failure(f"exited with code {child.process.returncode}")
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def log_warnings(text: str) -> list[str]:
    """WARN/ERROR/FATAL lines of a ROS console log, first line of each, without repeats."""
    found: list[str] = []
    for line in text.splitlines():
        match = _LOG_LINE.match(line.strip())
        if match and f"{match[1]}: {match[2]}" not in found:
            found.append(f"{match[1]}: {match[2]}")
    return found
