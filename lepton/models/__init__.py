"""Models: the LeNet family, the zoo, a registry by name, user models by ``module:factory``, size counters, and
plain state dicts read without running code (:func:`read_weights`)."""

from lepton.models.lenet import LeNet5, LeNet5Classic, LeNet300100
from lepton.models.normalize import InputNorm, attach_input_norm, input_norm_of
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
    "InputNorm",
    "ModelSpec",
    "LeNet5",
    "LeNet5Classic",
    "LeNet300100",
    "attach_input_norm",
    "build_model",
    "count_macs",
    "count_params",
    "input_norm_of",
    "layer_table",
    "read_weights",
    "resolve_factory",
]
