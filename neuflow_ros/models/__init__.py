"""NeuFlow v1 and v2 optical-flow networks, checkpoint-compatible with the official weights."""

from .base import EncodedImages, FlowNetwork
from .batchnorm_folding import fold_batchnorm
from .neuflow_v1 import NeuFlowV1
from .neuflow_v2 import NeuFlowV2

__all__ = ["EncodedImages", "FlowNetwork", "NeuFlowV1", "NeuFlowV2", "fold_batchnorm"]
