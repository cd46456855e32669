"""Models: the LeNet family, the zoo, a registry by name, user models by ``module:factory``, size counters, and
plain state dicts read without running code (:func:`read_weights`)."""

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
from lepton.models.weights import read_weights

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
    "read_weights",
    "resolve_factory",
]
