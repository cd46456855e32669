"""``lepton run``: the end-to-end pipeline from one YAML config."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from lepton.cli.app import app
from lepton.cli.options import AmpOpt, Device, Format, Overrides, Quiet, TrustCode, format_option, out_option
from lepton.cli.output import console, print_json
from lepton.errors import ConfigError


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
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            metavar="DIR",
            help="continue the interrupted run in DIR with its saved config: finished stages whose outputs "
            "verify are skipped, training continues from its last epoch",
        ),
    ] = None,
    track: Annotated[
        str | None,
        typer.Option(
            metavar="KIND",
            help="also log the config, every stage's numbers and the training curves for an experiment "
            "tracker: tensorboard (event files in OUT/tensorboard) or mlflow (a local SQLite store, "
            "OUT/mlflow/mlflow.db); both need pip install 'lepton-ml[track]'",
        ),
    ] = None,
) -> None:
    """Run the whole chain and write OUT/metrics.json, OUT/report.html and the artifacts.

    Examples:
      lepton run                          # default: LeNet-5 on MNIST
      lepton run --quick -o runs/smoke    # a fast end-to-end check
      lepton run --quick -o runs/smoke --overwrite   # again, replacing that run
      lepton run examples/lenet5_mnist.yaml --set train.epochs=4
      lepton run examples/lenet5_mnist.yaml --device cuda --amp bf16   # train.device / train.amp
      lepton run --resume runs/smoke      # continue a killed run where it stopped
      lepton run --quick -o runs/tb --track tensorboard   # then: tensorboard --logdir runs/tb
      lepton run --quick -o runs/ml --track mlflow   # then: mlflow ui --backend-store-uri sqlite:///runs/ml/mlflow/mlflow.db
    """
    from lepton.config import parse_overrides
    from lepton.pipeline import load_run_config, run_pipeline
    from lepton.pipeline.resume import resume_config
    from lepton.pipeline.run import prepare_run_dir
    from lepton.pipeline.stages import STAGES
    from lepton.report.track import check_tracker
    from lepton.train.amp import training_device
    from lepton.utils.device import resolve_device

    over = parse_overrides(set_ or [])
    if device is not None:  # every stage that trains: train, compress's fine-tuning (train.device) and quantum
        over.setdefault("train", {})["device"] = device
        over.setdefault("quantum", {})["device"] = device
    if amp is not None:
        over.setdefault("train", {})["amp"] = amp
    if resume is not None:
        if out is not None or overwrite:
            raise ConfigError("--resume DIR continues the run in DIR: leave out -o and --overwrite.")
        given = config is not None or quick or bool(over)
        cfg = resume_config(resume, load_run_config(config, quick=quick, overrides=over) if given else None)
    else:
        cfg = load_run_config(config, quick=quick, overrides=over)
    training_device(cfg.train.device, cfg.train.amp)  # a device this machine lacks fails before any stage runs
    if cfg.quantum.enabled:
        resolve_device(cfg.quantum.device)
    if track is not None:
        check_tracker(track)  # a missing package fails before any work
    if resume is not None:
        run_dir = resume
    else:
        run_dir = out or Path("runs") / f"{cfg.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        prepare_run_dir(run_dir, overwrite=overwrite)  # refuse before any work, not after loading the data
    result = run_pipeline(
        cfg, run_dir, progress=not quiet, trust_code=trust_code, resume=resume is not None, track=track
    )
    if fmt is Format.json:
        print_json(result.metrics)
        return
    for stage in STAGES:
        if stage.name in result.state.reports:
            again = " [dim](from the interrupted run)[/]" if stage.name in result.skipped else ""
            line = f"[bold]{stage.name}[/]: {stage.summary(result.state.reports[stage.name])}{again}"
            console.print(line, soft_wrap=True)  # one line per stage, also when piped
    console.print(f"results: {run_dir}/metrics.json · report: {run_dir}/report.html")
