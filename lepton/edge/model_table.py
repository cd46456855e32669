"""The models one server serves: name -> version -> the :class:`lepton.edge.server.ServedModel`, its own
:class:`lepton.edge.batcher.Batcher` and statistics.

An unversioned URL goes to the name's default version: the one declared (``default_versions``) if it is loaded,
else the highest (numerically when every version is a number, else in string order). :meth:`ModelTable.put`
swaps a version in atomically (the event loop runs one task at a time: a request looks up either the old entry
or the new one), and the old one is retired: requests that already hold it (:meth:`Entry.hold`) finish, up to
``drain_s``, then its batcher runs what is queued and stops. Versions that failed to load or were unloaded
stay listed as UNAVAILABLE with the reason (:meth:`ModelTable.index`, Triton's repository index).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lepton.edge.batcher import Batcher, Stats
from lepton.edge.observe import ServerMetrics
from lepton.edge.oip import ProtocolError


@dataclass
class Entry:
    """One loaded version: the model, its batcher, its statistics and the requests holding it."""

    model: Any
    batcher: Batcher
    stats: Stats = field(default_factory=Stats)
    active: int = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[Entry]:
        """Held by a request from its lookup to its answer, so a retiring version waits for it."""
        self.active += 1
        try:
            yield self
        finally:
            self.active -= 1


def version_key(version: str) -> tuple[int, int, str]:
    """Numbers in numeric order, after every non-numeric version (so "10" is newer than "9")."""
    return (1, int(version), "") if version.isdigit() else (0, 0, version)


class ModelTable:
    """The served models (module docstring).

    Args:
        config: the :class:`lepton.edge.server.ServeConfig` (batching options, ``drain_s``, ``default_versions``).
        metrics: the server's metrics; each version gets its own ``model``/``version`` labels.
    """

    def __init__(self, config: Any, metrics: ServerMetrics) -> None:
        self.config, self.metrics = config, metrics
        self.models: dict[str, dict[str, Entry]] = {}
        self.unavailable: dict[tuple[str, str], str] = {}
        self.started = False

    def _entry(self, model: Any) -> Entry:
        stats = Stats()
        c = self.config
        batcher = Batcher(model, c.max_batch_size, c.max_delay_ms / 1000, stats, self.metrics, c.inline_rows)
        self.metrics.queue_depth.labels(model.name, model.version).set_function(batcher.qsize)
        return Entry(model, batcher, stats)

    def add(self, model: Any) -> None:
        """Add a model before the server starts; a name and version may appear once."""
        if model.version in self.models.get(model.name, {}):
            raise ValueError(f"model {model.name!r} version {model.version!r} is given twice; serve each version once.")
        self.models.setdefault(model.name, {})[model.version] = self._entry(model)

    def start(self) -> None:
        """Start every batcher (on the running event loop)."""
        for versions in self.models.values():
            for entry in versions.values():
                entry.batcher.start()
        self.started = True

    def ready(self) -> bool:
        return self.started and all(
            e.batcher.task is not None and not e.batcher.task.done() for v in self.models.values() for e in v.values()
        )

    async def stop(self, drain_s: float) -> None:
        await asyncio.gather(*(e.batcher.stop(drain_s) for v in self.models.values() for e in v.values()))

    def versions(self, name: str) -> list[str]:
        """The loaded versions of ``name``, oldest first (404 if none)."""
        if name not in self.models:
            self.lookup(name, None)
        return sorted(self.models[name], key=version_key)

    def default_version(self, name: str) -> str:
        versions = self.models[name]
        declared = self.config.default_versions.get(name)
        return declared if declared in versions else max(versions, key=version_key)

    def lookup(self, name: str, version: str | None) -> Entry:
        """The entry answering ``name`` (and ``version``; None or "": the default); 404 if none."""
        versions = self.models.get(name)
        if versions and not version:
            return versions[self.default_version(name)]
        if versions and version in versions:
            return versions[version]
        served = ", ".join(f"{n}:{v}" for n in sorted(self.models) for v in sorted(self.models[n], key=version_key))
        asked = name if not version else f"{name} version {version}"
        reason = self.unavailable.get((name, version or ""))
        raise ProtocolError(
            404,
            f"model {asked!r} is not served here{f' ({reason})' if reason else ''}; served: {served or 'none'}.",
        )

    async def put(self, model: Any) -> None:
        """Serve ``model`` (a new version, or a replacement of a loaded one, swapped in atomically)."""
        entry = self._entry(model)
        if self.started:
            entry.batcher.start()
        old = self.models.setdefault(model.name, {}).get(model.version)
        self.models[model.name][model.version] = entry
        self.unavailable.pop((model.name, model.version), None)
        self.unavailable.pop((model.name, ""), None)
        if old is not None:
            await self._retire(old, relabel=False)

    def fail(self, name: str, version: str | None, reason: str) -> None:
        """Record that ``name`` (``version``; None: whichever the load asked for) could not be loaded."""
        self.unavailable[(name, version or "")] = reason

    async def remove(self, name: str, version: str | None = None) -> list[str]:
        """Stop serving ``name`` (every version, or only ``version``); returns the versions removed."""
        versions = self.models.get(name, {})
        chosen = [version] if version else list(versions)
        if not versions or any(v not in versions for v in chosen):
            self.lookup(name, version)  # the 404 naming what is served
        entries = [versions.pop(v) for v in chosen]
        if not versions:
            del self.models[name]
        for v in chosen:
            self.unavailable[(name, v)] = "unloaded"
        await asyncio.gather(*(self._retire(e) for e in entries))
        return chosen

    async def _retire(self, entry: Entry, *, relabel: bool = True) -> None:
        deadline = time.monotonic() + self.config.drain_s
        while entry.active and time.monotonic() < deadline:  # requests that looked it up finish first
            await asyncio.sleep(0.005)
        await entry.batcher.stop(max(0.0, deadline - time.monotonic()))
        if relabel:
            with contextlib.suppress(KeyError):
                self.metrics.queue_depth.remove(entry.model.name, entry.model.version)

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: every loaded version READY, every failed or unloaded one UNAVAILABLE."""
        rows = [
            {"name": n, "version": v, "state": "READY", "reason": ""}
            for n in sorted(self.models)
            for v in sorted(self.models[n], key=version_key)
        ]
        if not ready_only:
            rows += [
                {"name": n, "version": v, "state": "UNAVAILABLE", "reason": reason}
                for (n, v), reason in sorted(self.unavailable.items())
            ]
        return rows
