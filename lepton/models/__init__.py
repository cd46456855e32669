"""Models: the LeNet family, a registry by name, user models by ``module:factory``, size counters."""

from lepton.models.lenet import LeNet5, LeNet5Classic, LeNet300100
from lepton.models.registry import (
    MODELS,
    ModelSpec,
    build_model,
    count_macs,
    count_params,
    layer_table,
    resolve_factory,
)

__all__ = [
    "MODELS",
    "ModelSpec",
    "LeNet5",
    "LeNet5Classic",
    "LeNet300100",
    "build_model",
    "count_macs",
    "count_params",
    "layer_table",
    "resolve_factory",
]
