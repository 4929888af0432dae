"""Where a flow grid sits on the input image, and how its vectors scale.

The networks need sides that are multiples of 16, cameras rarely deliver
them, and a caller may prefer a smaller, cheaper inference resolution. Every
backend therefore runs on a *grid* derived from the input size in one of two
ways, and this module is the single place that decides which:

* padded: the grid is the input grown at the right and bottom edges (edge
  replication) up to the alignment; the flow is cropped back, so grid pixels
  *are* input pixels and vectors need no scaling;
* resized: the input is resampled to a fixed inference size; vectors are
  multiplied by the size ratios so they are always in input pixels.

Pixel-centre convention (the one ``cv2.resize`` and
``torch.nn.functional.interpolate(..., align_corners=False)`` use): flow pixel
``(fx, fy)`` of a ``W_flow x H_flow`` flow image covers the input point
``((fx + 0.5) * W_in / W_flow - 0.5, (fy + 0.5) * H_in / H_flow - 0.5)``. The
``OpticalFlow`` message documents the same convention.
"""

from __future__ import annotations

from dataclasses import dataclass

NETWORK_ALIGNMENT = 16
"""NeuFlow downsamples by 16, so both grid sides must be multiples of it."""

NETWORK_MIN_SIDE = 32
"""Smallest grid side for the networks: a 1-cell 1/16 grid leaves the
correlation lookup with nothing to interpolate between."""

OUTPUT_GRIDS = ("input", "inference")


@dataclass(frozen=True)
class FrameGeometry:
    """The grid one input size is processed on, and the way back to input pixels."""

    input_width: int
    input_height: int
    grid_width: int
    grid_height: int
    resized: bool
    """True: the input is resampled to the grid. False: the grid is the input
    padded at the right and bottom (or the input itself)."""

    @property
    def pad_right(self) -> int:
        return 0 if self.resized else self.grid_width - self.input_width

    @property
    def pad_bottom(self) -> int:
        return 0 if self.resized else self.grid_height - self.input_height

    @property
    def vector_scale(self) -> tuple[float, float]:
        """Input pixels per grid pixel (x, y): multiply grid-space vectors by it."""
        if not self.resized:
            return 1.0, 1.0
        return self.input_width / self.grid_width, self.input_height / self.grid_height

    def output_size(self, output_grid: str) -> tuple[int, int]:
        """(width, height) of the returned flow for an output grid choice.

        A padded grid is always cropped back to the input, because cropping is
        free and padding pixels carry no information; only a resized grid can
        be returned at the cheaper inference resolution.
        """
        check_output_grid(output_grid)
        if output_grid == "inference" and self.resized:
            return self.grid_width, self.grid_height
        return self.input_width, self.input_height


def check_output_grid(output_grid: str) -> None:
    if output_grid not in OUTPUT_GRIDS:
        raise ValueError(f"output_grid must be one of {OUTPUT_GRIDS}, got {output_grid!r}")


def validate_inference_size(size: object) -> tuple[int, int]:
    """Normalise an inference size to ``(width, height)`` or raise a ValueError.

    Lists are accepted because ROS parameters and YAML deliver lists.
    """
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"inference_size must be (width, height), got {size!r}")
    width, height = size
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"inference_size {name} must be an int, got {value!r}")
        if value < NETWORK_MIN_SIDE or value % NETWORK_ALIGNMENT:
            raise ValueError(
                f"inference_size {name} must be a multiple of {NETWORK_ALIGNMENT} and at "
                f"least {NETWORK_MIN_SIDE}, got {value}"
            )
    return int(width), int(height)


def plan_geometry(
    width: int,
    height: int,
    inference_size: tuple[int, int] | None,
    alignment: int = NETWORK_ALIGNMENT,
    min_side: int = NETWORK_MIN_SIDE,
) -> FrameGeometry:
    """Choose the grid for an input of ``width x height``.

    ``alignment=1, min_side=1`` gives the identity grid for backends (DIS)
    that accept any size.
    """
    if inference_size is not None:
        grid_width, grid_height = inference_size
        resized = (grid_width, grid_height) != (width, height)
        return FrameGeometry(width, height, grid_width, grid_height, resized)
    grid_width = max(_round_up(width, alignment), min_side)
    grid_height = max(_round_up(height, alignment), min_side)
    return FrameGeometry(width, height, grid_width, grid_height, resized=False)


def flow_pixel_to_input_point(
    fx: float, fy: float, input_size: tuple[int, int], flow_size: tuple[int, int]
) -> tuple[float, float]:
    """Input-image point covered by flow pixel ``(fx, fy)``; sizes are (width, height).

    Consumers of flow at the inference grid (e.g. a feature tracker sampling
    the flow at corner positions) need this to line the two images up.
    """
    input_width, input_height = input_size
    flow_width, flow_height = flow_size
    return (
        (fx + 0.5) * input_width / flow_width - 0.5,
        (fy + 0.5) * input_height / flow_height - 0.5,
    )


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
