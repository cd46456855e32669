"""Lazy re-exports for package ``__init__``s (PEP 562): a name is imported from its module on first use.

So ``import lepton.train.config`` (which runs ``lepton/train/__init__.py`` first) does not load torch, while
``from lepton.train import fit`` still works.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


class _LazyPackage(ModuleType):
    """A package whose re-exported names load on first use.

    A re-exported name keeps its meaning when a submodule of the same spelling loads: ``lepton.train.evaluate``
    is the function, as it was with eager re-exports, even after ``lepton.train.loop`` imports the module
    ``lepton.train.evaluate`` (the import system binds a loaded submodule onto its package).
    """

    _lazy_names: dict[str, str]

    def __getattr__(self, name: str) -> object:
        module = self._lazy_names.get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, ModuleType) and name in self._lazy_names and value.__name__ == f"{self.__name__}.{name}":
            return  # a submodule loading: the re-exported name wins
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._lazy_names))


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> None:
    """Make ``package`` re-export ``{module: names}`` lazily; the names must be exactly the package's ``__all__``."""
    pkg = sys.modules[package]
    names = {name: module for module, listed in exports.items() for name in listed}
    if sorted(names) != sorted(pkg.__all__):
        raise ImportError(f"{package}: lazy exports {sorted(names)} differ from __all__ {sorted(pkg.__all__)}")
    outside = [m for m in exports if not m.startswith("lepton.")]
    if outside:  # the mapping is written in lepton's own __init__ files; it never names code elsewhere
        raise ImportError(f"{package}: lazy exports may only come from Lepton's modules, not {outside}")
    pkg.__dict__["_lazy_names"] = names
    pkg.__class__ = _LazyPackage
