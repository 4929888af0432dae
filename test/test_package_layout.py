"""The package layout keeps its promises: a ROS-free core and imports that run one way.

The subpackages form layers (tools -> node -> (flow, tracking) -> (imaging,
models)); a module may import its own subpackage and strictly lower layers
only. The core layers must import in an interpreter that has no rclpy at all,
which is how a user of `pip install .` (notebooks, other frameworks) gets them.
"""
import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "neuflow_ros"
LAYER_RANKS = {"imaging": 0, "models": 0, "flow": 1, "tracking": 1, "node": 2, "tools": 3}
ROS_FREE_LAYERS = ("imaging", "models", "flow", "tracking")

ROS_BLOCKING_IMPORTER = textwrap.dedent(
    """
    import importlib, importlib.abc, json, sys

    BLOCKED = ("rclpy", "rosidl_runtime_py", "rosidl_parser", "neuflow_ros.msg", "sensor_msgs",
               "std_msgs", "stereo_msgs", "builtin_interfaces", "diagnostic_msgs", "lifecycle_msgs",
               "launch", "launch_ros", "ament_index_python")

    class NoRos(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == blocked or name.startswith(blocked + ".") for blocked in BLOCKED):
                raise ImportError(f"{name} is blocked: this interpreter has no ROS")
            return None

    sys.meta_path.insert(0, NoRos())
    failures = {}
    for module in json.loads(sys.argv[1]):
        try:
            importlib.import_module(module)
        except Exception as error:
            failures[module] = f"{type(error).__name__}: {error}"
    print(json.dumps(failures))
    """
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules_of(layer: str) -> list[Path]:
    return sorted((PACKAGE_DIR / layer).rglob("*.py"))


def _imports_without_ros(modules: list[str], extra_path: Path | None = None) -> dict[str, str]:
    """Imports each module in a fresh interpreter in which every ROS import fails."""
    code = ROS_BLOCKING_IMPORTER
    if extra_path is not None:
        code = f"import sys; sys.path.insert(0, {str(extra_path)!r})\n" + code
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(modules)],
        capture_output=True, text=True, timeout=240, cwd=PACKAGE_DIR.parent, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _imported_subpackages(path: Path) -> set[tuple[str, int]]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return _subpackages_imported_by(path.read_text(), package)


def _subpackages_imported_by(source: str, package: str) -> set[tuple[str, int]]:
    """(subpackage of neuflow_ros, line) for every import in a module, lazy ones included."""
    package_parts = package.split(".")
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] == "neuflow_ros" and len(parts) > 1 and parts[1] in LAYER_RANKS:
                found.add((parts[1], node.lineno))
    return found


def test_core_layers_import_in_an_interpreter_without_ros():
    modules = [_module_name(path) for layer in ROS_FREE_LAYERS for path in _modules_of(layer)]
    assert len(modules) > 30
    assert _imports_without_ros(modules) == {}


def test_the_ros_free_check_catches_a_module_that_imports_rclpy(tmp_path):
    (tmp_path / "core_module_that_imports_ros.py").write_text("import rclpy\n")
    failures = _imports_without_ros(
        ["neuflow_ros.imaging.flow_io", "core_module_that_imports_ros"], extra_path=tmp_path
    )
    assert list(failures) == ["core_module_that_imports_ros"]
    assert "rclpy is blocked" in failures["core_module_that_imports_ros"]


@pytest.mark.parametrize("layer", sorted(LAYER_RANKS))
def test_imports_run_from_higher_layers_to_lower_ones(layer):
    rank = LAYER_RANKS[layer]
    upward = [
        f"{path.relative_to(PACKAGE_DIR.parent)}:{line} imports neuflow_ros.{target}"
        for path in _modules_of(layer)
        for target, line in _imported_subpackages(path)
        if target != layer and LAYER_RANKS[target] >= rank
    ]
    assert upward == []


def test_the_layer_check_sees_relative_absolute_and_lazy_imports():
    source = (
        "from . import camera_model\n"
        "import neuflow_ros.imaging.flow_io\n"
        "def later():\n"
        "    from ..node import flow_worker\n"
        "    from neuflow_ros import tools\n"
    )
    assert _subpackages_imported_by(source, "neuflow_ros.tracking") == {
        ("tracking", 1), ("imaging", 2), ("node", 4), ("tools", 5)
    }


def test_only_the_package_init_lives_at_the_top():
    top_level = sorted(path.name for path in PACKAGE_DIR.glob("*.py"))
    subpackages = sorted(
        path.name for path in PACKAGE_DIR.iterdir() if (path / "__init__.py").exists()
    )
    assert top_level == ["__init__.py"]
    assert subpackages == sorted(LAYER_RANKS)


@pytest.mark.parametrize("layer", sorted(LAYER_RANKS))
def test_each_subpackage_init_documents_itself_and_holds_no_logic(layer):
    tree = ast.parse((PACKAGE_DIR / layer / "__init__.py").read_text())
    docstring = ast.get_docstring(tree)
    assert docstring and len(docstring) > 80
    for statement in tree.body[1:]:
        is_reexport = isinstance(statement, ast.ImportFrom)
        is_all = isinstance(statement, ast.Assign) and [
            target.id for target in statement.targets if isinstance(target, ast.Name)
        ] == ["__all__"]
        assert is_reexport or is_all, ast.dump(statement)[:80]
