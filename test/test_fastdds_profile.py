"""The Fast DDS profile variable comes from the installed Fast DDS, never from ROS_DISTRO.

Fast DDS 2.x (Jazzy) reads only FASTRTPS_DEFAULT_PROFILES_FILE, 3.x (Kilted)
only FASTDDS_DEFAULT_PROFILES_FILE; the wrong one leaves the shared-memory
profile unapplied without a word. The expected variable is taken from the
bytes of the Fast DDS library that rmw loaded into this test process (the
name it reads from the environment is in there), so the same tests prove the
choice on every environment the suite runs in (`make test`, `make test
DISTRO=jazzy`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ros_test_support import NodeProcess, wait_for_process_ready

from neuflow_ros.node.fastdds_profile import (
    ALL_PROFILE_VARIABLES,
    fastdds_in,
    profile_variables,
)
from neuflow_ros.tools.graph_processes import graph_environment

HINT = "no Fast DDS profile set"


@pytest.fixture(scope="module")
def variable_read_by_loaded_fastdds(harness) -> str:
    """The profile variable the Fast DDS library in this process (rmw_fastrtps) reads."""
    maps = Path("/proc/self/maps").read_text()
    libraries = set(re.findall(r"(/\S*/lib(?:fastdds|fastrtps)\.so[.0-9]*)$", maps, re.M))
    assert len(libraries) == 1, f"expected one Fast DDS library loaded, found {libraries}"
    binary = Path(libraries.pop()).read_bytes()
    read = [variable for variable in ALL_PROFILE_VARIABLES if variable.encode() in binary]
    assert len(read) == 1, f"the library mentions {read}"
    return read[0]


@pytest.fixture
def no_profile_variables(monkeypatch):
    for variable in ALL_PROFILE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize("distro", [None, "humble", "jazzy", "kilted"])
def test_graph_environment_sets_the_variable_the_installed_fastdds_reads(
        variable_read_by_loaded_fastdds, no_profile_variables, monkeypatch, distro):
    if distro is None:
        monkeypatch.delenv("ROS_DISTRO", raising=False)
    else:
        monkeypatch.setenv("ROS_DISTRO", distro)
    profile_keys = set(graph_environment()) & set(ALL_PROFILE_VARIABLES)
    assert profile_keys == {variable_read_by_loaded_fastdds}


def test_graph_environment_keeps_a_profile_the_user_set(monkeypatch):
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", "/my/profile.xml")
    assert not set(graph_environment()) & set(ALL_PROFILE_VARIABLES)


def test_the_library_name_decides_the_version_in_search_order(tmp_path):
    jazzy, kilted, empty = (tmp_path / name / "lib" for name in ("jazzy", "kilted", "empty"))
    for directory, library in ((jazzy, "libfastrtps.so.2.14.5"), (kilted, "libfastdds.so.3.2.2")):
        directory.mkdir(parents=True)
        (directory / library).write_bytes(b"")
    empty.mkdir(parents=True)
    found = fastdds_in([empty, jazzy, kilted])
    assert (found.major, found.library.name) == (2, "libfastrtps.so.2.14.5")
    assert profile_variables(found) == ("FASTRTPS_DEFAULT_PROFILES_FILE",)
    found = fastdds_in([kilted, jazzy])
    assert (found.major, found.library.name) == (3, "libfastdds.so.3.2.2")
    assert profile_variables(found) == ("FASTDDS_DEFAULT_PROFILES_FILE",)
    assert fastdds_in([empty, tmp_path / "missing"]) is None
    assert profile_variables(None) == ALL_PROFILE_VARIABLES


def _hint_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if HINT in line]


def test_startup_hint_checks_the_variable_the_installed_fastdds_reads(
        harness, tmp_path, variable_read_by_loaded_fastdds, no_profile_variables):
    """Unset, or only the other version's variable set (ignored by this Fast DDS): a hint.

    The variable that is read, set: no hint. All three nodes start together.
    """
    profile = graph_environment()[variable_read_by_loaded_fastdds]
    (other,) = set(ALL_PROFILE_VARIABLES) - {variable_read_by_loaded_fastdds}
    nodes = {
        "unset": NodeProcess(tmp_path / "unset"),
        "other": NodeProcess(tmp_path / "other", extra_env={other: profile}),
        "read": NodeProcess(tmp_path / "read",
                            extra_env={variable_read_by_loaded_fastdds: profile}),
    }
    try:
        for node in nodes.values():
            wait_for_process_ready(harness, node, 30.0)
        outputs = {case: node.output() for case, node in nodes.items()}
    finally:
        for node in nodes.values():
            node.close()
    for case in ("unset", "other"):
        (line,) = _hint_lines(outputs[case])
        assert "[WARN]" in line
        assert variable_read_by_loaded_fastdds in line
        assert other not in line, line
    assert _hint_lines(outputs["read"]) == [], outputs["read"]
