"""``metrics.json``: the machine-readable record of a run (field names documented in docs/metrics.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lepton.utils.io import atomic_write_text

SCHEMA_VERSION = 1


def metrics_document(
    config: BaseModel, env: dict[str, Any], dataset: dict[str, Any] | None, reports: dict[str, BaseModel]
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "config": config.model_dump(mode="json"),
        "env": env,
        "dataset": dataset,
        "stages": {name: r.model_dump(mode="json") for name, r in reports.items()},
    }


def write_metrics(path: Path, document: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
