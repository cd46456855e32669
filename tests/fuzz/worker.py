"""A long-lived fuzz worker: reads case ids on stdin, writes one JSON result per line on its own channel.

``python -m tests.fuzz.worker SEEDS_JSON WORKDIR HEADROOM_MB``. It imports everything, reads every
valid seed once (the numba kernels load, the caches warm up), then caps its address space at its size plus
``HEADROOM_MB`` so that a forged size fails fast instead of swapping, and only then reports ready. Its
current folder is ``WORKDIR``, where forged specs would create the marker file the parent looks for.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, TextIO

_ALLOC = re.compile(
    r"can't allocate memory|not enough memory|bad_alloc|Cannot allocate memory|out of memory", re.IGNORECASE
)


def classify(exc: BaseException) -> str:
    from lepton.errors import LeptonError

    if isinstance(exc, LeptonError):
        return "refused"
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and _ALLOC.search(str(exc))):
        return "memory"
    return "unexpected"


def where(exc: BaseException) -> str:
    """The innermost frame in Lepton's package (else the innermost frame): ``path:line in function``."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/lepton/" in f.filename and "/tests/" not in f.filename]
    f = (ours or frames or [None])[-1]
    if f is None:
        return "?"
    name = f.filename.split("/lepton/", 1)[-1] if ours else Path(f.filename).name
    return f"{'lepton/' if ours else ''}{name}:{f.lineno} in {f.name}"


def run_case(case_id: str, seeds: dict[str, list[Path]], workdir: Path, full: bool) -> dict[str, Any]:
    """Build and read one case in a fresh folder; the folder is removed afterwards."""
    from tests.fuzz.formats import build_case, read_case

    fmt, seed, index = case_id.split(":")
    case_dir = Path(tempfile.mkdtemp(prefix="case-", dir=workdir))
    result: dict[str, Any] = {"id": case_id, "outcome": "ok"}
    try:
        try:
            path, note = build_case(fmt, int(seed), int(index), seeds, case_dir)
        except Exception as e:  # noqa: BLE001 - a bug in the harness, not in Lepton
            return {
                **result,
                "outcome": "harness-error",
                "type": type(e).__name__,
                "where": where(e),
                "message": traceback.format_exc()[-2000:],
            }
        result["note"] = note[:300]
        try:
            read_case(fmt, path, note)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - classifying every exception is the point
            text = str(e).replace(str(case_dir), "<case>")
            result.update(outcome=classify(e), type=type(e).__name__, message=text[:400], where=where(e))
            if full:
                result["traceback"] = "".join(traceback.format_exception(e)).replace(str(case_dir), "<case>")
        return result
    finally:
        shutil.rmtree(case_dir, ignore_errors=True)


def warm_up(seeds: dict[str, list[Path]], workdir: Path) -> None:
    """Read every seed (a copy) once: each must be accepted, else the harness itself is wrong."""
    from tests.fuzz.formats import read_case

    for fmt, files in seeds.items():
        for source in files:
            with tempfile.TemporaryDirectory(dir=workdir) as tmp:
                copy = Path(tmp) / source.name
                if source.is_dir():
                    shutil.copytree(source, copy)
                else:
                    for sibling in source.parent.glob(source.stem + ".*"):
                        shutil.copy(sibling, Path(tmp) / sibling.name)
                read_case(fmt, copy, "")


def vm_size() -> int:
    """This process's virtual memory size in bytes (what RLIMIT_AS limits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _channel() -> TextIO:
    """The parent's result channel: the original stdout. fd 1 then goes to stderr, so that anything a
    reader or a forged factory prints cannot corrupt the protocol."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return out


def main(argv: list[str]) -> None:
    seeds_json, workdir, headroom_mb = argv
    channel = _channel()
    import torch

    torch.set_num_threads(1)
    seeds = {fmt: [Path(p) for p in paths] for fmt, paths in json.loads(Path(seeds_json).read_text()).items()}
    workdir_path = Path(workdir)
    os.chdir(workdir_path)
    warm_up(seeds, workdir_path)
    limit = vm_size() + int(headroom_mb) * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    channel.write(json.dumps({"ready": limit}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        channel.write(json.dumps(run_case(request["id"], seeds, workdir_path, request.get("full", False))) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
