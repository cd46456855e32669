"""Tensor-train layers are a classical layer and live beside the models: :mod:`lepton.models.tensor_train`.
This name is kept so that code importing ``lepton.quantum.tensor_train`` keeps working."""

from lepton.models import tensor_train as _tt

TTLinear, tt_svd, tt_for_ratio, factorize = _tt.TTLinear, _tt.tt_svd, _tt.tt_for_ratio, _tt.factorize
tt_layout, apply_tt_layout, check_tt_layout = _tt.tt_layout, _tt.apply_tt_layout, _tt.check_tt_layout
convert_linears, replace_module, tt_core_elements = _tt.convert_linears, _tt.replace_module, _tt.tt_core_elements

__all__ = [
    "TTLinear",
    "apply_tt_layout",
    "check_tt_layout",
    "convert_linears",
    "factorize",
    "replace_module",
    "tt_core_elements",
    "tt_for_ratio",
    "tt_layout",
    "tt_svd",
]
