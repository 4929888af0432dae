"""Offline results as plain files, for users who evaluate without ROS tools.

Layout of the output folder:

* ``flow/<frame>.flo`` or ``flow/<frame>.png`` (KITTI): flow from
  ``<frame>`` to the frame after it, named after the EARLIER frame of the
  pair, as Sintel, Middlebury and KITTI name theirs (``frame_0002.flo`` is
  2 -> 3), so files match ground truth by name;
* ``flow_vis/<frame>.png`` with ``--flow-vis``, named the same way;
* ``flow_index.csv``: one row per flow file with both frames' names and
  stamps, so every file can be matched to its images without guessing
  (``flow_file`` empty when flow files are off: a tracks-only run, where
  2.9 MB of flow per 752x480 frame would be written for nothing);
* ``tracks.csv``: one row per track and frame pair.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from neuflow_ros.imaging.flow_io import write_flo, write_kitti_flow
from neuflow_ros.imaging.flow_visualization import flow_to_rgb
from neuflow_ros.tools.offline_pipeline import PairOutput

FLOW_FORMATS = {"flo": ".flo", "kitti": ".png"}
INDEX_FILE = "flow_index.csv"
TRACKS_FILE = "tracks.csv"
INDEX_COLUMNS = ("flow_file", "previous_frame", "frame", "previous_stamp_ns", "stamp_ns")
TRACK_COLUMNS = (
    "stamp_ns", "previous_stamp_ns", "id", "age", "x", "y", "previous_x", "previous_y",
    "velocity_x", "velocity_y", "normalized_x", "normalized_y", "error",
)


def _csv_number(value: float) -> str:
    # repr of a float32 widened to float64 is long; 9 significant digits
    # round-trip float32 exactly.
    return "nan" if math.isnan(value) else f"{value:.9g}"


class FlowFolderWriter:
    """Writes each frame pair's results into an output folder (layout in the module doc)."""

    def __init__(self, folder: Path, flow_format: str, flow_vis: bool, tracks: bool,
                 vis_max_magnitude: float | None = None, flow_files: bool = True) -> None:
        if flow_format not in FLOW_FORMATS:
            raise ValueError(f"flow format must be one of {tuple(FLOW_FORMATS)}, "
                             f"got {flow_format!r}")
        self._folder = folder
        self._flow_format = flow_format
        self._vis_max_magnitude = vis_max_magnitude
        self._flow_files = flow_files
        folder.mkdir(parents=True, exist_ok=True)
        if flow_files:
            (folder / "flow").mkdir(exist_ok=True)
        self._vis_dir = folder / "flow_vis" if flow_vis else None
        if self._vis_dir is not None:
            self._vis_dir.mkdir(exist_ok=True)
        self._files: list[TextIO] = []
        self._index = self._open_csv(INDEX_FILE, INDEX_COLUMNS)
        self._tracks = self._open_csv(TRACKS_FILE, TRACK_COLUMNS) if tracks else None

    def write(self, output: PairOutput) -> None:
        name = output.previous.name
        flow = output.flow.forward
        flow_file = ""
        if self._flow_files:
            path = Path("flow") / f"{name}{FLOW_FORMATS[self._flow_format]}"
            if self._flow_format == "flo":
                write_flo(self._folder / path, flow)
            else:
                write_kitti_flow(self._folder / path, flow)
            flow_file = path.as_posix()
        if self._vis_dir is not None:
            rgb = flow_to_rgb(flow, self._vis_max_magnitude)
            path = self._vis_dir / f"{name}.png"
            if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write {path}")
        previous_stamp, stamp = output.previous.stamp_ns, output.current.stamp_ns
        self._index.writerow([flow_file, name, output.current.name,
                              previous_stamp, stamp])
        if self._tracks is not None and output.tracks is not None:
            self._write_tracks(output, previous_stamp, stamp)

    def close(self) -> None:
        for file in self._files:
            file.close()

    def _write_tracks(self, output: PairOutput, previous_stamp: int, stamp: int) -> None:
        assert self._tracks is not None and output.tracks is not None
        tracks = output.tracks
        floats = np.column_stack([
            tracks.positions, tracks.previous_positions, tracks.velocities, tracks.normalized,
            tracks.errors,
        ]).tolist()
        for track_id, age, values in zip(tracks.ids.tolist(), tracks.ages.tolist(), floats,
                                         strict=True):
            self._tracks.writerow(
                [stamp, previous_stamp, track_id, age, *(_csv_number(v) for v in values)]
            )

    def _open_csv(self, name: str, columns: tuple[str, ...]) -> Any:
        file = (self._folder / name).open("w", newline="", encoding="utf-8")
        self._files.append(file)
        writer = csv.writer(file)
        writer.writerow(columns)
        return writer
