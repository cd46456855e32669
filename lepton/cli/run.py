"""``lepton run``: the end-to-end pipeline from one YAML config."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from lepton.cli.app import app
from lepton.cli.options import AmpOpt, Device, Format, Overrides, Quiet, TrustCode, format_option, out_option
from lepton.cli.output import console, print_json


@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="run YAML [default: built-in LeNet-5 on MNIST]")] = None,
    quick: Annotated[bool, typer.Option(help="smoke-test preset: a subset, one epoch (under 2 minutes)")] = False,
    out: Annotated[Path | None, out_option("run folder [default: runs/NAME-TIME]")] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="clear OUT first if it holds a previous run (a run folder never mixes two runs)"
        ),
    ] = False,
    set_: Overrides = None,
    quiet: Quiet = False,
    fmt: Annotated[Format, format_option("table or json (prints metrics.json)")] = Format.table,
    trust_code: TrustCode = False,
    device: Device = None,
    amp: AmpOpt = None,
) -> None:
    """Run the whole chain and write OUT/metrics.json, OUT/report.html and the artifacts.

    Examples:
      lepton run                          # default: LeNet-5 on MNIST
      lepton run --quick -o runs/smoke    # a fast end-to-end check
      lepton run --quick -o runs/smoke --overwrite   # again, replacing that run
      lepton run examples/lenet5_mnist.yaml --set train.epochs=4
      lepton run examples/lenet5_mnist.yaml --device cuda --amp bf16   # train.device / train.amp
    """
    from lepton.config import parse_overrides
    from lepton.pipeline import load_run_config, run_pipeline
    from lepton.pipeline.run import prepare_run_dir
    from lepton.train.amp import training_device
    from lepton.utils.device import resolve_device

    over = parse_overrides(set_ or [])
    if device is not None:  # every stage that trains: train, compress's fine-tuning (train.device) and quantum
        over.setdefault("train", {})["device"] = device
        over.setdefault("quantum", {})["device"] = device
    if amp is not None:
        over.setdefault("train", {})["amp"] = amp
    cfg = load_run_config(config, quick=quick, overrides=over)
    training_device(cfg.train.device, cfg.train.amp)  # a device this machine lacks fails before any stage runs
    if cfg.quantum.enabled:
        resolve_device(cfg.quantum.device)
    run_dir = out or Path("runs") / f"{cfg.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    prepare_run_dir(run_dir, overwrite=overwrite)  # refuse before any work, not after loading the data
    result = run_pipeline(cfg, run_dir, progress=not quiet, trust_code=trust_code)
    if fmt is Format.json:
        print_json(result.metrics)
        return
    for name, report in result.metrics["stages"].items():
        acc = report.get("test_accuracy")
        console.print(
            f"[bold]{name}[/]: "
            + (f"test accuracy {100 * acc:.2f}%" if acc is not None else "done")
            + (
                f", {report['file_bytes']:,} bytes, {report['ratio']:.1f}x smaller than fp32"
                if name == "compress"
                else ""
            )
        )
    console.print(f"results: {run_dir}/metrics.json · report: {run_dir}/report.html")
