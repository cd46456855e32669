"""What makes ``lepton run --resume DIR`` safe: stage completion records and the saved config.

When a stage finishes, and only after its outputs are on disk, the pipeline writes
``DIR/stages/NAME.done.json`` atomically: the stage's report, its seconds, and the size and SHA-256 of
every output file the stage names (:meth:`Stage.outputs`). A resumed run skips a stage only if its record
reads back and every file still has the recorded size and digest; the first stage that fails this, and
every stage after it, is redone from scratch (their records are deleted first, so a stage killed again is
never taken for done). The config is the one saved in ``DIR/config.yaml``; a different one is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from lepton.errors import ConfigError, FormatError
from lepton.pipeline.config import RunConfig, load_run_config
from lepton.pipeline.state import Stage
from lepton.utils import strict_json
from lepton.utils.io import atomic_write_text, sha256_file

RECORDS = "stages"
"""The run folder's sub-folder of stage completion records."""

MAX_RECORD_BYTES = 64 << 20  # a report with per-layer rows and histories is well under a megabyte


@dataclass
class StageRecord:
    """A finished stage, read back from its completion record with every output file verified."""

    report: BaseModel
    seconds: float


def record_path(run_dir: Path, name: str) -> Path:
    return run_dir / RECORDS / f"{name}.done.json"


def write_record(run_dir: Path, stage: Stage, report: BaseModel, seconds: float) -> Path:
    """Record that ``stage`` finished: its report, seconds and each output's size and SHA-256.

    Call it only after the stage's outputs are written; the record itself is written atomically.
    """
    files = {}
    for name in stage.outputs(report):
        path = run_dir / name
        files[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    document = {
        "stage": stage.name,
        "seconds": seconds,
        "files": files,
        "report": report.model_dump(mode="json"),
    }
    path = record_path(run_dir, stage.name)
    path.parent.mkdir(exist_ok=True)
    atomic_write_text(path, json.dumps(document, indent=1, allow_nan=False))
    return path


def read_record(run_dir: Path, stage: Stage) -> tuple[StageRecord | None, str]:
    """``stage``'s record if it exists and every output it lists verifies; else None and the reason."""
    path = record_path(run_dir, stage.name)
    if not path.is_file():
        return None, "it did not finish"
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise FormatError(f"{path}: {path.stat().st_size:,} bytes, over the {MAX_RECORD_BYTES:,} a record may hold")
        doc = strict_json.expect_dict(strict_json.loads(path.read_bytes(), str(path)), str(path))
        files = strict_json.expect_dict(doc.get("files"), f"{path}: 'files'")
        seconds = doc.get("seconds")
        if doc.get("stage") != stage.name or type(seconds) is not float:
            raise FormatError(f"{path}: 'stage' must be {stage.name!r} and 'seconds' a number")
        report = stage.report_type.model_validate(doc.get("report"))
    except (FormatError, ValidationError) as e:
        return None, f"its completion record does not read ({' '.join(str(e).split())[:160]})"
    if any(Path(name).name != name or name in ("", ".", "..") for name in files):
        return None, "its record names a file outside the run folder"
    if sorted(files) != sorted(stage.outputs(report)):
        return None, f"its record lists {sorted(files)}, not the outputs {sorted(stage.outputs(report))}"
    for name, entry in files.items():
        out = run_dir / name
        if not out.is_file():
            return None, f"its output {name} is missing"
        if (
            not isinstance(entry, dict)
            or entry.get("bytes") != out.stat().st_size
            or entry.get("sha256") != sha256_file(out)
        ):
            return None, f"its output {name} changed since the stage finished"
    return StageRecord(report, seconds), ""


def forget_records(run_dir: Path, stages: list[Stage]) -> None:
    """Delete the completion records of ``stages`` (those about to be redone)."""
    for stage in stages:
        record_path(run_dir, stage.name).unlink(missing_ok=True)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def config_differences(saved: RunConfig, given: RunConfig) -> list[str]:
    """The dotted keys whose values differ between two configs, each as ``key (saved A, given B)``."""
    a, b = _flatten(saved.model_dump(mode="json")), _flatten(given.model_dump(mode="json"))
    return [
        f"{key} (saved {a.get(key, '<absent>')!r}, given {b.get(key, '<absent>')!r})"
        for key in sorted(set(a) | set(b))
        if a.get(key, "<absent>") != b.get(key, "<absent>")
    ]


def resume_config(run_dir: str | Path, given: RunConfig | None = None) -> RunConfig:
    """The config saved in ``run_dir``; ``given`` (from the command line) must equal it.

    Raises:
        ConfigError: ``run_dir`` holds no run, or ``given`` differs (the message lists every differing key).
    """
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(
            f"--resume {run_dir}: no config.yaml there, so it is not a Lepton run folder (or the run never "
            "started); give the folder of an interrupted run, or start a new run with -o."
        )
    saved = load_run_config(saved_path)
    if given is not None:
        diff = config_differences(saved, given)
        if diff:
            raise ConfigError(
                f"--resume {run_dir}: the config given differs from the one the run was started with: "
                f"{'; '.join(diff)}. Resume without a config, --quick, --set, --device or --amp (the saved "
                "config is used), or start a new run with -o."
            )
    return saved
