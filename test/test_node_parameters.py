"""Parameter declarations, the shipped config file and start-up validation."""

from pathlib import Path

import pytest
import yaml

from neuflow_ros.node import parameters
from neuflow_ros.node.parameters import (
    PARAMETERS,
    ConfigurationError,
    descriptor_for,
    read_settings,
    validate_camera_names,
)

CONFIG = Path(__file__).resolve().parents[1] / "config" / "neuflow.yaml"
RUNTIME_PARAMETERS = {
    "drop_frames", "max_frame_gap", "publish_resolution", "flow_vis_max_magnitude",
    "diagnostics.input_timeout", "diagnostics.min_output_ratio", "diagnostics.stall_timeout",
}


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _defaults() -> dict:
    return {spec.name: spec.default for spec in PARAMETERS}


def test_shipped_config_lists_every_parameter_with_its_default():
    document = yaml.safe_load(CONFIG.read_text())
    values = _flatten(document["/**/neuflow"]["ros__parameters"])
    assert set(values) == set(_defaults())
    for name, default in _defaults().items():
        assert values[name] == default, name
        assert type(values[name]) is type(default), f"{name}: YAML type differs (1 vs 1.0?)"


def test_only_runtime_parameters_are_writable():
    writable = {spec.name for spec in PARAMETERS if not spec.read_only}
    assert writable == RUNTIME_PARAMETERS


def test_descriptors_carry_description_ranges_and_choices():
    for spec in PARAMETERS:
        descriptor = descriptor_for(spec)
        assert len(descriptor.description) > 20, spec.name
        assert descriptor.read_only == spec.read_only
    gap = descriptor_for(next(s for s in PARAMETERS if s.name == "max_frame_gap"))
    assert (gap.floating_point_range[0].from_value, gap.floating_point_range[0].to_value) == (
        0.0, 3600.0)
    depth = descriptor_for(next(s for s in PARAMETERS if s.name == "input_qos.depth"))
    assert depth.integer_range[0].from_value == 1
    transport = descriptor_for(next(s for s in PARAMETERS if s.name == "transport"))
    assert "raw" in transport.additional_constraints
    assert "compressed" in transport.additional_constraints


def _settings(**overrides):
    values = {**_defaults(), **overrides}
    return read_settings(values.__getitem__)


def test_defaults_give_one_unnamed_dis_camera():
    settings = _settings()
    assert settings.cameras == ("",)
    assert settings.backend == "dis"
    assert settings.checkpoint is None
    assert settings.inference_size is None
    assert settings.num_threads is None
    assert not settings.input_reliable
    assert settings.output_reliable
    assert settings.runtime.drop_frames
    assert settings.runtime.flow_vis_max_magnitude is None


@pytest.mark.parametrize(("overrides", "named"), [
    ({"transport": "theora"}, "transport"),
    ({"backend": "raft"}, "backend"),
    ({"publish_resolution": "half"}, "publish_resolution"),
    ({"input_qos.reliability": "sometimes"}, "input_qos.reliability"),
    ({"device": "gpu"}, "device"),
    ({"inference_width": 320}, "inference_height"),
    ({"cameras": ["front", "9lives"]}, "cameras"),
    ({"cameras": ["a", "a"]}, "cameras"),
    ({"tracking.detection_tile": 8}, "detection_tile"),
])
def test_impossible_values_name_the_parameter(overrides, named):
    with pytest.raises(ConfigurationError, match=named.replace(".", r"\.")):
        _settings(**overrides)


def test_compressed_transport_without_the_jpeg_decoder_is_refused_at_start_up(monkeypatch):
    monkeypatch.setattr(parameters, "jpeg_decoder_available", lambda: False)
    assert _settings().transport == "raw"  # raw cameras do not need it
    with pytest.raises(ConfigurationError, match="'transport' compressed needs the simplejpeg"):
        _settings(transport="compressed")


def test_camera_names():
    assert validate_camera_names([]) == ("",)
    assert validate_camera_names(["front", "rear/left"]) == ("front", "rear/left")
    with pytest.raises(ConfigurationError):
        validate_camera_names(["", "front"])
    with pytest.raises(ConfigurationError):
        validate_camera_names(["/absolute"])


def test_inference_size_and_vis_scale_are_read():
    settings = _settings(inference_width=320, inference_height=240, flow_vis_max_magnitude=8.0)
    assert settings.inference_size == (320, 240)
    assert settings.runtime.flow_vis_max_magnitude == 8.0


def test_readme_parameter_table_matches_the_declarations():
    """The README's table is what users read; it must list every parameter with its default."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`"): line.split("|")[2].strip().strip("`")
        for line in readme.splitlines()
        if line.startswith("| `")
    }
    for spec in PARAMETERS:
        assert spec.name in rows, f"README lacks parameter {spec.name}"
        default = spec.default
        if isinstance(default, bool):
            expected = "true" if default else "false"
        elif isinstance(default, str):
            expected = f'"{default}"'
        elif isinstance(default, list):
            expected = "[" + ", ".join(f'"{item}"' for item in default) + "]"
        else:
            expected = str(default)
        assert rows[spec.name] == expected, spec.name


def test_stereo_is_off_by_default_and_reads_the_pair_when_set():
    assert _settings().stereo is None
    settings = _settings(**{
        "cameras": ["left", "right", "down"], "stereo.pair": ["left", "right"],
        "stereo.max_stamp_difference": 0.0015, "stereo.epipolar_threshold": 0.5,
        "tracking.fb_threshold": 0.7,
    })
    assert (settings.stereo.left, settings.stereo.right) == ("left", "right")
    assert settings.stereo.max_stamp_difference_ns == 1_500_000
    assert settings.stereo.match.epipolar_threshold == 0.5
    assert settings.stereo.match.consistency_threshold == 0.7


@pytest.mark.parametrize(
    "pair", [["left"], ["left", "left"], ["left", "rear"], ["left", "right", "down"]]
)
def test_a_stereo_pair_that_is_not_two_of_the_cameras_stops_start_up(pair):
    with pytest.raises(ConfigurationError, match=r"stereo\.pair"):
        _settings(**{"cameras": ["left", "right", "down"], "stereo.pair": pair})
