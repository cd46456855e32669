"""``lepton run``: load and verify the data, run every enabled stage, write the run directory.

The run directory holds ``config.yaml`` (the resolved config), ``metrics.json`` (rewritten after each
stage, so an interrupted run still shows what finished), the artifacts stages write, ``stages/NAME.done.json``
(a stage's completion record, written after its outputs) and ``report.html``. ``resume=True`` continues an
interrupted run in its folder (:mod:`lepton.pipeline.resume`).
"""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from lepton.data.sources import load_training_data
from lepton.data.store import StoreSource, load_packed
from lepton.errors import ConfigError
from lepton.pipeline.config import RunConfig
from lepton.pipeline.resume import forget_records, read_record, resume_config, write_record
from lepton.pipeline.stages import STAGES
from lepton.pipeline.state import RunState, Stage
from lepton.report import environment, metrics_document, write_metrics
from lepton.report import html as H
from lepton.report.track import open_tracker
from lepton.utils.io import atomic_write_text
from lepton.utils.timing import stopwatch


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    state: RunState
    skipped: list[str]
    """Stages a resumed run found finished and verified, so did not run again."""


# Files only a Lepton run folder holds; --overwrite clears a folder only if it holds one of them.
RUN_MARKERS = ("config.yaml", "metrics.json")


def prepare_run_dir(run_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Make ``run_dir`` an empty folder for a new run, so that a run folder never mixes two runs.

    A non-empty folder is refused unless ``overwrite``; then it is cleared first, but only if it looks like a
    Lepton run folder (it holds ``config.yaml`` or ``metrics.json``), so a user's unrelated folder is never deleted.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir}: a file of that name exists; choose another folder with -o.")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"run folder {run_dir} is not empty (a previous run?); pass --overwrite to replace "
                "it, or choose another folder with -o."
            )
        if not any((run_dir / m).is_file() for m in RUN_MARKERS):
            raise ConfigError(
                f"run folder {run_dir} is not empty and holds no {' or '.join(RUN_MARKERS)}, so it "
                "does not look like a Lepton run folder; --overwrite refuses to delete it: choose "
                "another folder with -o."
            )
        for entry in run_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def run_pipeline(
    config: RunConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    console: Console | None = None,
    stages: list[Stage] | None = None,
    trust_code: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    track: str | None = None,
) -> RunResult:
    """Run every enabled stage into ``run_dir``.

    Args:
        config: the run's config; with ``resume``, it must equal the one saved in ``run_dir``.
        run_dir: a new or empty folder (``overwrite``: clear a previous run's folder first; see
            :func:`prepare_run_dir`), or with ``resume`` an interrupted run's folder.
        resume: skip the stages whose completion records and outputs verify, reusing their reports;
            redo the first one that does not and every one after it (the train stage continues from its
            last epoch checkpoint).
        track: ``"tensorboard"``: also write the config and every stage's numbers as TensorBoard event files in
            ``run_dir/tensorboard``; ``"mlflow"``: as one MLflow run in the SQLite store
            ``run_dir/mlflow/mlflow.db`` (:mod:`lepton.report.track`); None: no tracking.

    Returns:
        The run folder, the metrics document written to ``metrics.json``, the final state, the skipped stages.
    """
    run_dir = Path(run_dir)
    if resume:
        resume_config(run_dir, config)
    else:
        run_dir = prepare_run_dir(run_dir, overwrite=overwrite)
    console = console or Console(stderr=True, quiet=not progress)
    state = RunState(
        config=config, run_dir=run_dir, console=console, progress=progress, trust_code=trust_code, resume=resume
    )
    if not resume:
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    env = environment(seed=config.train.seed)
    tracker = open_tracker(track, run_dir)  # before any work: a missing package fails now, not at the end
    if tracker is not None:
        tracker.config(config)

    with stopwatch() as sw:
        source = load_training_data(config.data.dataset, config.data)
        data = load_packed(source.store) if isinstance(source, StoreSource) else source  # later stages need arrays
        state.dataset = data.subset(config.data.train_subset, config.data.test_subset)
        state.training_source = source.subset(config.data.train_subset, config.data.test_subset)
    console.print(
        f"[bold]data[/] {data.name}: {len(state.dataset.x_train):,} train / "
        f"{len(state.dataset.x_test):,} test, verified ({sw.seconds:.1f} s)"
    )
    seconds: dict[str, float] = {}
    document: dict[str, Any] = {}
    enabled = [s for s in (stages if stages is not None else STAGES) if s.enabled(config)]
    skipped: list[str] = []
    for i, stage in enumerate(enabled):
        console.rule(f"[bold]{stage.name}[/]: {stage.title}")
        if resume and len(skipped) == i:  # every stage before this one was skipped: is this one finished too?
            record, why = read_record(run_dir, stage)
            if record is not None:
                stage.restore(state, record.report)
                state.reports[stage.name], seconds[stage.name] = record.report, record.seconds
                skipped.append(stage.name)
                console.print("finished in the interrupted run and its outputs verify: not run again")
            else:
                forget_records(run_dir, enabled[i:])  # this stage and every later one are redone from scratch
                console.print(f"running it again: {why}")
        if stage.name not in skipped:
            with stopwatch() as sw:
                report = stage.run(state)
            state.reports[stage.name], seconds[stage.name] = report, round(sw.seconds, 3)
            write_record(run_dir, stage, report, seconds[stage.name])  # after the outputs: then it counts as done
        document = metrics_document(config, env, state.dataset.summary(), state.reports)
        document["seconds"] = seconds
        write_metrics(run_dir / "metrics.json", document)
        if tracker is not None:
            tracker.stage(stage.name, state.reports[stage.name])
    if tracker is not None:
        tracker.close()
    atomic_write_text(run_dir / "report.html", render_report(state, env, seconds, enabled))
    return RunResult(run_dir, document, state, skipped)


def render_report(state: RunState, env: dict[str, Any], seconds: dict[str, float], stages: list[Stage]) -> str:
    cfg, data = state.config, state.require_dataset()
    parts = [
        f"<h1>Lepton run: {html.escape(cfg.name)}</h1>",
        f"<p class='muted'>{html.escape(env['time_utc'])} · lepton {html.escape(env['lepton'])} · "
        f"torch {html.escape(env['torch'])} · {env['torch_threads']} threads · seed {cfg.train.seed}</p>",
        f"<p>Dataset <b>{html.escape(data.name)}</b>: {len(data.x_train):,} training and "
        f"{len(data.x_test):,} test images of shape {list(data.input_shape)}, {data.num_classes} classes.</p>",
        H.table([{"stage": s.name, "seconds": seconds.get(s.name, 0.0)} for s in stages if s.name in seconds]),
    ]
    for stage in stages:
        if stage.name in state.reports:
            parts.append(f"<h2>{html.escape(stage.title)}</h2>")
            parts.append(stage.html(state.reports[stage.name], state))
    parts.append(
        "<h2>Reproduce</h2><p>The resolved configuration (<code>config.yaml</code>):</p>"
        f"<pre>{html.escape(yaml.safe_dump(cfg.model_dump(mode='json'), sort_keys=False))}</pre>"
        f"<p>Environment:</p><pre>{html.escape(yaml.safe_dump(env, sort_keys=False))}</pre>"
    )
    return H.page(f"Lepton run {cfg.name}", "".join(parts))
