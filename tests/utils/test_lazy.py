import importlib
import sys
from types import ModuleType

import pytest

from lepton.utils.lazy import lazy_exports

PACKAGES = ["lepton.train", "lepton.distributed", "lepton.pipeline"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_lazy_name_is_the_object_its_module_defines(package):
    pkg = importlib.import_module(package)
    for name in pkg.__all__:
        assert name in dir(pkg)
        module = importlib.import_module(pkg._lazy_names[name])
        assert getattr(pkg, name) is getattr(module, name)


def test_a_submodule_of_the_same_name_does_not_shadow_the_re_export():
    importlib.import_module("lepton.train.evaluate")  # the module, loaded by lepton.train.loop too
    importlib.import_module("lepton.distributed.launch")
    from lepton.distributed import launch
    from lepton.train import evaluate

    assert callable(evaluate) and not isinstance(evaluate, ModuleType)
    assert callable(launch) and not isinstance(launch, ModuleType)


def test_unknown_names_still_raise():
    import lepton.train

    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        lepton.train.nothing  # noqa: B018
    with pytest.raises(ImportError):
        from lepton.train import nothing  # noqa: F401


def test_exports_must_match_all(monkeypatch):
    fake = ModuleType("lepton_fake_pkg")
    fake.__all__ = ["a", "b"]
    monkeypatch.setitem(sys.modules, "lepton_fake_pkg", fake)
    with pytest.raises(ImportError, match="differ from __all__"):
        lazy_exports("lepton_fake_pkg", {"json": ("a",)})


def test_exports_come_only_from_lepton_modules(monkeypatch):
    fake = ModuleType("lepton_fake_pkg")
    fake.__all__ = ["system"]
    monkeypatch.setitem(sys.modules, "lepton_fake_pkg", fake)
    with pytest.raises(ImportError, match="only come from Lepton's modules"):
        lazy_exports("lepton_fake_pkg", {"os": ("system",)})
