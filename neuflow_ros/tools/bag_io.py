"""rosbag2 files in and out without a ROS install, through the `rosbags` library.

Users record flights on the robot and tune on a laptop that often has no
ROS. `rosbags` reads and writes sqlite3 and mcap bags in pure Python; this
module adds what the offline tool needs on top: the package's own message
types (so the output bag carries their definitions and ROS tools can read
them), faithful copies of the input topics, and clear errors for bags that
cannot be used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinitionFormat
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import (
    Stores,
    TypesysError,
    get_types_from_idl,
    get_types_from_msg,
    get_typestore,
)
from rosbags.typesys.store import Typestore

PACKAGE = "neuflow_ros"
NEUFLOW_MESSAGES = ("Track", "OpticalFlow", "TrackArray")
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
STORAGE_PLUGINS = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
# rosbag2 format 8 is read by Jazzy and newer; 9 only adds fields older readers reject.
BAG_FORMAT_VERSION = 8


class BagError(Exception):
    """A bag that cannot be read or written as asked; the message is meant for the user."""


def message_definition_dirs() -> list[Path]:
    """Where the package's .msg files may lie, most authoritative first.

    The installed share directory (rosidl installs msg/ there) comes first;
    the source tree next to this module covers runs from a checkout and
    `pip install .` of the core, which installs no share directory.
    """
    candidates = [
        Path(prefix) / "share" / PACKAGE / "msg"
        for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
        if prefix
    ]
    candidates.append(Path(__file__).resolve().parents[2] / "msg")
    return candidates


def neuflow_message_types(search_dirs: list[Path] | None = None) -> dict:
    """rosbags type definitions of the package's messages, parsed from its .msg files."""
    dirs = message_definition_dirs() if search_dirs is None else search_dirs
    for directory in dirs:
        files = [directory / f"{name}.msg" for name in NEUFLOW_MESSAGES]
        if all(path.is_file() for path in files):
            types: dict = {}
            for name, path in zip(NEUFLOW_MESSAGES, files, strict=True):
                types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{name}"))
            return types
    searched = ", ".join(str(d) for d in dirs)
    raise BagError(
        f"cannot find the {PACKAGE} message definitions ({', '.join(NEUFLOW_MESSAGES)}.msg); "
        f"searched: {searched}. Source install/setup.bash of the built package."
    )


def create_typestore() -> Typestore:
    """Standard ROS 2 types plus the package's own."""
    typestore = get_typestore(Stores.LATEST)
    typestore.register(neuflow_message_types())
    return typestore


def storage_of(path: Path) -> str:
    """'mcap' or 'sqlite3': the storage plugin a bag directory or file uses."""
    files = [path] if path.is_file() else list(path.iterdir())
    return "mcap" if any(".mcap" in f.suffixes for f in files) else "sqlite3"


def open_reader(path: Path) -> Reader:
    """An open Reader, or a BagError that says why the bag cannot be read."""
    try:
        reader = Reader(path)
        reader.open()
    except (FileNotFoundError, ReaderError, OSError, KeyError, ValueError) as error:
        raise BagError(f"cannot read bag {path}: {error}") from error
    return reader


def topics_of_types(reader: Reader, msgtypes: tuple[str, ...]) -> list[str]:
    return sorted({c.topic for c in reader.connections if c.msgtype in msgtypes})


def topic_connections(reader: Reader, topic: str, msgtypes: tuple[str, ...], role: str
                      ) -> list[Connection]:
    """The connections of ``topic``, checked to carry one of ``msgtypes``."""
    connections = [c for c in reader.connections if c.topic == topic]
    if not connections:
        available = ", ".join(topics_of_types(reader, msgtypes)) or "none"
        raise BagError(f"{role} topic {topic!r} is not in the bag; {role} topics: {available}")
    wrong = sorted({c.msgtype for c in connections if c.msgtype not in msgtypes})
    if wrong:
        raise BagError(
            f"{role} topic {topic!r} has type {', '.join(wrong)}; expected one of "
            f"{', '.join(msgtypes)}"
        )
    return connections


class OutputBag:
    """A new bag that receives copies of input topics and new topics.

    Closing writes the metadata, which makes whatever was written so far a
    valid bag; the tool closes it on Ctrl-C for that reason.
    """

    def __init__(self, path: Path, storage: str, typestore: Typestore,
                 warn: Callable[[str], None]) -> None:
        if storage not in STORAGE_PLUGINS:
            raise BagError(f"storage must be one of {tuple(STORAGE_PLUGINS)}, got {storage!r}")
        self._typestore = typestore
        self._warn = warn
        self._copies: dict[int, Connection | None] = {}
        try:
            self._writer = Writer(path, version=BAG_FORMAT_VERSION,
                                  storage_plugin=STORAGE_PLUGINS[storage])
            self._writer.open()
        except (WriterError, OSError) as error:
            raise BagError(f"cannot create output bag {path}: {error}") from error

    def copy_of(self, connection: Connection) -> Connection | None:
        """The output connection mirroring an input one; None if its type cannot be described."""
        if connection.id not in self._copies:
            self._copies[connection.id] = self._add_copy(connection)
        return self._copies[connection.id]

    def add_topic(self, topic: str, msgtype: str) -> Connection:
        try:
            return self._writer.add_connection(topic, msgtype, typestore=self._typestore)
        except WriterError as error:
            raise BagError(f"cannot add topic {topic!r} to the output bag: {error}") from error

    def write(self, connection: Connection, timestamp_ns: int, data: bytes | memoryview) -> None:
        self._writer.write(connection, timestamp_ns, data)

    def write_message(self, connection: Connection, timestamp_ns: int, message: object) -> None:
        self._writer.write(connection, timestamp_ns,
                           self._typestore.serialize_cdr(message, connection.msgtype))

    def close(self) -> None:
        self._writer.close()

    def _add_copy(self, connection: Connection) -> Connection | None:
        ext = connection.ext
        qos = ext.offered_qos_profiles if isinstance(ext, ConnectionExtRosbag2) else []
        msgdef, rihs01 = self._definition_of(connection)
        if msgdef is None:
            self._warn(
                f"topic {connection.topic!r} is not copied: the bag holds no definition of "
                f"its type {connection.msgtype!r} and rosbags does not know it"
            )
            return None
        try:
            return self._writer.add_connection(
                connection.topic, connection.msgtype, msgdef=msgdef, rihs01=rihs01,
                offered_qos_profiles=qos,
            )
        except WriterError:
            # Input connections that differ only in what a bag does not store
            # (e.g. the publisher) collapse into one output connection.
            return next(c for c in self._writer.connections
                        if (c.topic, c.msgtype) == (connection.topic, connection.msgtype))

    def _definition_of(self, connection: Connection) -> tuple[str | None, str | None]:
        """Reuse the input's definition and hash; rebuild what older bags lack."""
        stored = connection.msgdef
        has_definition = stored.format != MessageDefinitionFormat.NONE and stored.data
        if has_definition and connection.digest:
            return stored.data, connection.digest
        msgtype = connection.msgtype
        if msgtype not in self._typestore.fielddefs and has_definition:
            try:
                if stored.format == MessageDefinitionFormat.IDL:
                    self._typestore.register(get_types_from_idl(stored.data))
                else:
                    self._typestore.register(get_types_from_msg(stored.data, msgtype))
            except TypesysError:
                return None, None
        if msgtype not in self._typestore.fielddefs:
            return None, None
        msgdef, _ = self._typestore.generate_msgdef(msgtype, ros_version=2)
        return msgdef, self._typestore.hash_rihs01(msgtype)


def iterate_messages(reader: Reader, start_ns: int | None, stop_ns: int | None
                     ) -> Iterator[tuple[Connection, int, bytes]]:
    """All messages in bag-time order within [start_ns, stop_ns)."""
    return reader.messages(start=start_ns, stop=stop_ns)
