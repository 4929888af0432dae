"""Which Fast DDS is installed, and so which variable points it at an XML profile.

Fast DDS 2.x (Humble, Jazzy: library libfastrtps) reads only
FASTRTPS_DEFAULT_PROFILES_FILE; 3.x (Kilted on: libfastdds) reads only
FASTDDS_DEFAULT_PROFILES_FILE. Setting the wrong one applies no profile and
says nothing, so the choice is made from the library that is actually there,
never from ROS_DISTRO (the PyPI wheels and many containers do not set it).
The launch file, graph_environment() and the node's start-up hint all ask
here. Needs no rclpy, so the launch process can import it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROFILE_VARIABLE_BY_MAJOR = {
    2: "FASTRTPS_DEFAULT_PROFILES_FILE",
    3: "FASTDDS_DEFAULT_PROFILES_FILE",
}
"""The profile variable each Fast DDS major version reads."""
ALL_PROFILE_VARIABLES = tuple(PROFILE_VARIABLE_BY_MAJOR.values())
MAJOR_BY_LIBRARY = {"libfastdds": 3, "libfastrtps": 2}
"""Library name and the major version it implies (3.0 renamed the library)."""
_LOADED_LIBRARY = re.compile(rf"/({'|'.join(MAJOR_BY_LIBRARY)})\.so[.0-9]*$")


@dataclass(frozen=True)
class FastDds:
    """One Fast DDS installation: its major version and the library it was found as."""

    major: int
    library: Path

    @property
    def profile_variable(self) -> str:
        return PROFILE_VARIABLE_BY_MAJOR[self.major]


def _loaded_library(maps: Path = Path("/proc/self/maps")) -> FastDds | None:
    """The Fast DDS this process has loaded (after rclpy.init with rmw_fastrtps), if any."""
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        match = _LOADED_LIBRARY.search(line)
        if match:
            return FastDds(MAJOR_BY_LIBRARY[match[1]], Path(line[line.index("/"):]))
    return None


def library_directories(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """Where a ROS install keeps Fast DDS: each prefix's lib/ (the ament prefixes first,
    then this interpreter's, where the PyPI wheels put it), then LD_LIBRARY_PATH."""
    prefixes = [p for p in environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    directories = [Path(prefix) / "lib" for prefix in [*prefixes, sys.prefix]]
    directories += [Path(p) for p in environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys(directories))


def fastdds_in(directories: Iterable[Path]) -> FastDds | None:
    """The first Fast DDS library in ``directories`` (in order), by its file name."""
    for directory in directories:
        for stem, major in MAJOR_BY_LIBRARY.items():
            library = directory / f"{stem}.so"
            versioned = sorted(directory.glob(f"{stem}.so.*")) if directory.is_dir() else []
            if library.exists() or versioned:
                return FastDds(major, versioned[-1] if versioned else library)
    return None


def installed_fastdds(environ: Mapping[str, str] = os.environ) -> FastDds | None:
    """The Fast DDS this process uses if it loaded one, else the first one installed."""
    return _loaded_library() or fastdds_in(library_directories(environ))


def profile_variables(fastdds: FastDds | None) -> tuple[str, ...]:
    """Variables to set for a profile: the one the installed Fast DDS reads, both if unknown."""
    return (fastdds.profile_variable,) if fastdds is not None else ALL_PROFILE_VARIABLES


def profile_environment(profile: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables that apply ``profile`` with the installed Fast DDS."""
    return {variable: profile for variable in profile_variables(installed_fastdds(environ))}


def profile_is_set(fastdds: FastDds | None, environ: Mapping[str, str] = os.environ) -> bool:
    """True when the variable the installed Fast DDS reads is set (either one if unknown)."""
    return any(environ.get(variable) for variable in profile_variables(fastdds))
