"""The data stage of ``lepton run`` alone, timed: wall seconds, the split of its time, the load average.

Runs :class:`lepton.pipeline.stages.data.DataStage` through :func:`lepton.pipeline.run_pipeline` with the
default run config (MNIST, ``auto`` image codec) and no other stage, in a temporary folder, with progress
on as in a plain ``lepton run`` (so lepton-cm's fit grows its pilot tree for the ETA) but drawn to nowhere,
then prints the stage's wall time, its report's split of that time, the store's size and the load average
before and after (the machine is shared: a load above the core count inflates every figure).

    .venv/bin/python benchmarks/data_stage.py                          # the default run's data stage
    .venv/bin/python benchmarks/data_stage.py --set data.dataset=digits  # a quick check
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time

from rich.console import Console

from lepton.config import parse_overrides
from lepton.pipeline import load_run_config, run_pipeline
from lepton.pipeline.stages.data import DataStage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = ap.parse_args()
    cfg = load_run_config(overrides=parse_overrides(args.set))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        console = Console(file=io.StringIO(), width=120)
        result = run_pipeline(cfg, tmp, progress=True, console=console, stages=[DataStage()])
        total = time.perf_counter() - t0
    load_after = os.getloadavg()
    report = result.state.reports["data"].model_dump()
    seconds = result.metrics["seconds"]["data"]
    print(f"dataset {cfg.data.dataset}: data stage {seconds:.1f} s (pipeline incl. loading {total:.1f} s)")
    split = report.get("seconds") or {k: report[k] for k in ("pack_seconds", "verify_seconds")}  # older reports
    print("split: " + ", ".join(f"{k} {v:.1f} s" for k, v in split.items()))
    print(
        f"store {report['store_bytes']:,} bytes, {report['bits_per_pixel']:.4f} bits/pixel; "
        f"image codec {report['image_codec']}, label codec {report['label_codec']}"
    )
    print(f"loadavg (1/5/15 min) before {load_before}, after {load_after}")
    print(json.dumps({k: v for k, v in report.items() if k not in ("codecs", "lossy")}, default=str))


if __name__ == "__main__":
    main()
