"""One NeuFlow network pass laid out as the engine lays it out, to measure what it costs.

The memory a camera setup needs is set by its worst pass: every stream
starting, so both images of each pair go through the backbone, then the
pairs gathered by index and, with backward flow, the swapped pairs stacked
into the same batch (NeuFlowBackend). The pass runs on whatever device and
dtype the model is on, ``meta`` included.
"""

from __future__ import annotations

import torch

from neuflow_ros.flow.frame_geometry import plan_geometry
from neuflow_ros.flow.neuflow_backend import decode_pairs, pair_order
from neuflow_ros.models import FlowNetwork


def run_network_pass(
    model: FlowNetwork,
    forward_options: dict[str, int],
    width: int,
    height: int,
    cameras: int,
    backward: bool,
) -> torch.Tensor:
    """Flow for ``cameras`` pairs of ``width x height`` frames (and their backward pairs)
    at the network grid; encoded frames are laid out [previous..., current...]."""
    reference = next(model.parameters())
    geometry = plan_geometry(width, height, None)
    with torch.inference_mode():
        images = torch.zeros(
            2 * cameras,
            3,
            geometry.grid_height,
            geometry.grid_width,
            device=reference.device,
            dtype=reference.dtype,
        )
        encoded = model.encode(images)
        first, second = pair_order(
            list(range(cameras)), list(range(cameras, 2 * cameras)), backward
        )
        index = {"device": reference.device, "dtype": torch.long}
        return decode_pairs(
            model,
            forward_options,
            encoded.features_s16,
            encoded.features_s8,
            encoded.upsample_context,
            torch.tensor(first, **index),
            torch.tensor(second, **index),
        )
