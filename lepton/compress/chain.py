"""The Deep-Compression chain, end to end: (remove channels) → prune → fold BatchNorm → share weights →
entropy-code into a `.lep` file.

Every step is fine-tuned with the shared training loop (optionally distilling from the dense model)
and measured on the test split. The final accuracy is measured on the model decoded from the file,
never on the in-memory model, and the decoded model's outputs are checked bit for bit against it.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from rich.console import Console
from torch import nn

from lepton.compress import presets
from lepton.compress.channel_step import ChannelStepReport, channel_step
from lepton.compress.config import CompressConfig
from lepton.compress.container import encode_model, inspect_lep, load_lep, save_lep
from lepton.compress.distill import distillation_objective
from lepton.compress.fold import fold_batchnorm, fold_pairs
from lepton.compress.prune import prune_gradual, sparsity_table
from lepton.compress.quantize import choose_bits
from lepton.compress.sensitivity import allocate_rates, sensitivity_scan
from lepton.compress.share import round_to_half, share_biases, share_weights
from lepton.compress.variational_step import VariationalStepReport, variational_step
from lepton.data.dataset import ImageDataset
from lepton.errors import ConfigError
from lepton.models.registry import ModelSpec, count_params
from lepton.models.tensor_train import TTLinear, convert_linears, tt_layout
from lepton.train import TensorBatches, TrainConfig, evaluate, fit, predict_logits, seed_everything
from lepton.train.loop import Objective, cross_entropy
from lepton.utils.timing import stopwatch


class StepRecord(BaseModel):
    """One point of the accuracy-against-size curve."""

    step: str
    test_accuracy: float
    bytes: int
    ratio: float
    kept: int


class CompressReport(BaseModel):
    file: str
    file_bytes: int
    dense_bytes: int
    ratio: float
    test_accuracy: float
    baseline_test_accuracy: float
    error_pp_vs_baseline: float
    coder: str
    huffman_bytes: int
    ans_bytes: int
    params: int
    kept: int
    bit_exact: bool
    sparsity: dict[str, float]
    tt: dict[str, dict[str, Any]] = {}
    folded_bn: list[str] = []
    channels: ChannelStepReport | None = None
    method: str = "deep"
    variational: VariationalStepReport | None = None
    recipe: dict[str, Any] = {}
    bits: dict[str, int]
    steps: list[StepRecord]
    layers: list[dict[str, Any]]
    sensitivity: dict[str, Any] | None
    seconds: dict[str, float]


def _train_cfg(cfg: CompressConfig, base: TrainConfig, epochs: int, lr: float, **update: Any) -> TrainConfig:
    return base.model_copy(
        update={
            "epochs": epochs,
            "lr": lr,
            "batch_size": cfg.batch_size,
            "warmup_epochs": 0.0,
            "schedule": "cosine",
            **update,
        }
    )


def _kept(model: nn.Module) -> int:
    """Non-zero conv/linear weights, plus every TT core element (TT layers are dense in their cores)."""
    return sum(
        int(torch.count_nonzero(m.weight)) if isinstance(m, nn.Conv2d | nn.Linear) else sum(c.numel() for c in m.cores)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear | TTLinear)
    )


def fold_step(student: nn.Module, spec: ModelSpec, console: Console) -> tuple[nn.Module, ModelSpec, list[str]]:
    """Fold BatchNorm into the convs feeding it, after pruning (scaling a filter keeps its zeros) and before
    weight sharing; returns the model, its spec (with the folded architecture as data) and the folded norms.
    A model torch.fx cannot trace or capture is left as it is, with a note."""
    example = torch.zeros(1, *spec.input_shape)
    try:
        pairs = fold_pairs(student, example)
        if not pairs:
            return student, spec, []
        folded = fold_batchnorm(student, example)
        return folded, spec.with_graph(folded), [norm for _, norm in pairs]
    except ConfigError as e:
        console.print(f"BatchNorm not folded: {e}")
        return student, spec, []


def compress_model(
    model: nn.Module,
    spec: ModelSpec,
    data: ImageDataset,
    cfg: CompressConfig,
    base: TrainConfig,
    out: str | Path,
    *,
    progress: bool = True,
    console: Console | None = None,
    trust_code: bool = False,
) -> CompressReport:
    """Compress a trained ``model`` and write ``out`` (a `.lep` file); ``model`` itself is left unchanged.

    With ``cfg.channels.enabled`` channels are removed (and the model fine-tuned) before magnitude pruning;
    with ``cfg.fold_bn`` every BatchNorm is folded into the conv feeding it after pruning, so weight sharing
    and the file work on the folded model (pruning fine-tunes with BatchNorm: without it, ResNet-20's
    fine-tuning at the default learning rate diverged). A model outside the registry, or a registry model whose
    shapes changed (folded, channel-pruned), is written with its architecture as data
    (:meth:`ModelSpec.with_graph`); one torch.fx cannot trace is re-read from ``out`` through its factory,
    which needs ``trust_code=True``.
    """
    console = console or Console(stderr=True, quiet=not progress)
    student = copy.deepcopy(model)
    spec = spec.with_graph(student)
    recipe: dict[str, Any] = {}
    if not cfg.tt.enabled:  # recipes are tuned on the plain architecture; TT layers want gentler steps
        cfg, recipe = presets.recipe_for(spec.name, cfg)
    if recipe:
        console.print(
            f"tuned recipe for {spec.name}: "
            + ", ".join(f"{k}={v}" for k, v in recipe.items())
            + " (set these keys to override)"
        )
    seconds: dict[str, float] = {}
    seed_everything(base.seed, base.threads)
    dense_bytes = 4 * count_params(model)
    x_train, y_train = data.tensors("train")
    x_test, y_test = data.tensors("test")
    n_val = min(cfg.validation_size, len(x_train) // 5)
    x_val, y_val = x_train[-n_val:], y_train[-n_val:]
    batches = TensorBatches(x_train, y_train, cfg.batch_size, seed=base.seed)
    teacher = copy.deepcopy(model).eval()
    objective: Objective = (
        distillation_objective(teacher, temperature=cfg.distill.temperature, alpha=cfg.distill.alpha)
        if cfg.distill.enabled
        else cross_entropy
    )

    def record(step: str, m: nn.Module, size: int) -> StepRecord:
        acc = evaluate(m, x_test, y_test).accuracy
        console.print(f"{step:>7}: test accuracy {100 * acc:.2f}%  {size:,} bytes  ({dense_bytes / size:.1f}x)")
        return StepRecord(step=step, test_accuracy=acc, bytes=size, ratio=dense_bytes / size, kept=_kept(m))

    steps = [record("dense", student, dense_bytes)]
    baseline = steps[0].test_accuracy
    metadata = {"dataset": data.summary(), "baseline_test_accuracy": baseline}
    compact = cfg.compact_file

    def file_size(m: nn.Module) -> int:
        return len(encode_model(spec, m.state_dict(), coder=cfg.coder, metadata=metadata, compact=compact))

    channels = None
    if cfg.channels.enabled:
        with stopwatch() as sw:
            student, spec, channels = channel_step(
                student,
                spec,
                cfg.channels,
                batches,
                _train_cfg(cfg, base, cfg.channels.epochs, cfg.channels.lr),
                objective=objective,
                progress=progress,
                console=console,
            )
        seconds["channels"] = sw.seconds
        steps.append(record("channels", student, file_size(student)))

    tt_report: dict[str, dict[str, Any]] = {}
    if cfg.tt.enabled:
        with stopwatch() as sw:
            tt_report = convert_linears(student, cfg.tt.layers, cores=cfg.tt.cores)
            spec = dataclasses.replace(spec, tt=tt_layout(student))
            console.print(
                "tensor-train: " + ", ".join(f"{k} {v['ratio']}x ranks {v['ranks']}" for k, v in tt_report.items())
            )
            if cfg.tt.epochs:
                fit(
                    student,
                    batches,
                    _train_cfg(cfg, base, cfg.tt.epochs, cfg.tt.lr),
                    objective=objective,
                    progress=progress,
                    console=console,
                )
        seconds["tt"] = sw.seconds
        steps.append(record("tt", student, file_size(student)))

    variational = None
    if cfg.method == "variational":
        with stopwatch() as sw:
            # the validation images stay out of the variational training: the operating point is chosen on them
            held_in = TensorBatches(x_train[:-n_val], y_train[:-n_val], cfg.batch_size, seed=base.seed)
            student, spec, variational = variational_step(
                student,
                spec,
                cfg.variational,
                held_in,
                _train_cfg(cfg, base, cfg.variational.epochs, cfg.variational.lr, optimizer="adam", weight_decay=0.0),
                n_train=len(x_train) - n_val,
                val=(x_val, y_val),
                test=(x_test, y_test),
                encode=lambda s, m: encode_model(
                    s, m.state_dict(), coder=cfg.coder, metadata=metadata, compact=compact
                ),
                half=compact,
                bias_bits=cfg.share.bias_bits,
                target_bytes=cfg.target_bytes,
                target_error=cfg.target_error,
                progress=progress,
                console=console,
            )
        seconds["variational"] = sw.seconds
        steps.append(record("sparse-vd", student, file_size(student)))

    scan, rates = None, {}
    if cfg.prune.enabled and cfg.method == "deep":
        sparsity = cfg.prune.sparsity
        if sparsity == "preset":
            preset = presets.sparsity_for(spec.name)
            sparsity = {k: v for k, v in preset.items() if k not in tt_report} if preset else "auto"
        n_scan = min(cfg.prune.auto_samples, len(y_val))
        with stopwatch() as sw:
            # 'auto' never picks a rate past a layer's max drop, so its scan stops there; otherwise the
            # whole curve is scanned for the report.
            scan = sensitivity_scan(
                student,
                x_val[:n_scan],
                y_val[:n_scan],
                stop_drop=cfg.prune.auto_max_drop if sparsity == "auto" else None,
                progress=progress,
                console=console,
            )
        seconds["sensitivity"] = sw.seconds
        if sparsity == "auto":
            sparsity = allocate_rates(
                scan,
                budget=cfg.prune.auto_budget,
                max_layer_drop=cfg.prune.auto_max_drop,
                max_rate=cfg.prune.auto_max_rate,
            )
            console.print("auto sparsity: " + ", ".join(f"{k} {v:.2f}" for k, v in sparsity.items()))
        with stopwatch() as sw:
            prune_gradual(
                student,
                batches,
                _train_cfg(cfg, base, cfg.prune.epochs, cfg.prune.lr),
                sparsity,
                scope=cfg.prune.scope,
                ramp_fraction=cfg.prune.ramp_fraction,
                objective=objective,
                progress=progress,
            )
        seconds["prune"] = sw.seconds
        steps.append(record("pruned", student, file_size(student)))
    folded_bn: list[str] = []
    if cfg.fold_bn:
        student, spec, folded_bn = fold_step(student, spec, console)
    rates = {r["layer"]: r["sparsity"] for r in sparsity_table(student)}
    bits: dict[str, int] = {}
    if cfg.share.enabled:
        with stopwatch() as sw:
            bits_cfg = cfg.share.bits
            if variational is not None and bits_cfg in ("preset", "posterior"):
                bits_cfg = dict(variational.bits)
            elif bits_cfg == "preset":
                bits_cfg = presets.bits_for(spec.name)
                if isinstance(bits_cfg, dict):
                    bits_cfg = {k: v for k, v in bits_cfg.items() if k not in tt_report}
            elif bits_cfg == "auto":
                bits_cfg = choose_bits(
                    student,
                    x_val,
                    y_val,
                    candidates=(2, 3, 4, 5, 6, 7, 8),
                    max_drop=cfg.share.auto_max_drop,
                    method="share",
                )
                console.print("auto bits: " + ", ".join(f"{k} {v}" for k, v in bits_cfg.items()))
            sharing = share_weights(student, bits_cfg)
            bits = dict(sharing.bits)
            if cfg.share.epochs:
                # Adam, not SGD: a centroid's gradient sums over its whole cluster, so its scale varies by layer.
                fit(
                    student,
                    batches,
                    _train_cfg(cfg, base, cfg.share.epochs, cfg.share.lr, optimizer="adam", weight_decay=0.0),
                    objective=objective,
                    progress=progress,
                    console=console,
                )
            sharing.finalize(student)
            share_biases(student, cfg.share.bias_bits)
        seconds["share"] = sw.seconds
        steps.append(record("shared", student, file_size(student)))

    with stopwatch() as sw:
        out = Path(out)
        if compact:
            round_to_half(student)
        file_bytes = save_lep(out, spec, student.state_dict(), coder=cfg.coder, metadata=metadata, compact=compact)
        decoded = load_lep(out).build_model(trust_code=trust_code)
        bit_exact = torch.equal(predict_logits(decoded, x_test), predict_logits(student, x_test))
        sizes = {
            c: len(encode_model(spec, student.state_dict(), coder=c, metadata=metadata, compact=compact))
            for c in ("ans", "huffman")
        }
    seconds["code"] = sw.seconds
    coded = record("coded", decoded, file_bytes)
    steps.append(coded)
    return CompressReport(
        file=out.name,
        file_bytes=file_bytes,
        dense_bytes=dense_bytes,
        ratio=dense_bytes / file_bytes,
        test_accuracy=coded.test_accuracy,
        baseline_test_accuracy=baseline,
        error_pp_vs_baseline=round(100 * (baseline - coded.test_accuracy), 4),
        coder=cfg.coder,
        huffman_bytes=sizes["huffman"],
        ans_bytes=sizes["ans"],
        params=count_params(decoded),
        kept=coded.kept,
        bit_exact=bit_exact,
        sparsity=rates,
        tt=tt_report,
        folded_bn=folded_bn,
        channels=channels,
        method=cfg.method,
        variational=variational,
        recipe=recipe,
        bits=bits,
        steps=steps,
        layers=inspect_lep(out),
        sensitivity=scan.model_dump() if scan is not None else None,
        seconds={k: round(v, 2) for k, v in seconds.items()},
    )
