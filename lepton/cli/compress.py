"""``lepton compress``: compress a checkpoint into a `.lep` file; ``lepton compress inspect`` a `.lep` file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from lepton.cli.app import app
from lepton.cli.checks import arch_spec, input_file, output_file
from lepton.cli.options import (
    AmpOpt,
    Arch,
    Device,
    Format,
    FormatOpt,
    InputShape,
    NormalizeMean,
    NormalizeStd,
    NumClasses,
    Overrides,
    Quiet,
    TrustCode,
    config_option,
    out_option,
)
from lepton.cli.output import console, print_json, print_table


class _CompressGroup(TyperGroup):
    """``lepton compress CHECKPOINT [OPTIONS]`` runs the group itself (its callback holds the options, so
    ``lepton compress --help`` lists them); a first word that names a verb (``inspect``, or ``model``, the old
    spelling of the default) runs that verb instead."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if not args:  # no_args_is_help
            return super().parse_args(ctx, args)
        command = super(TyperGroup, self)  # the plain command parser, without the group's split into verb + rest
        if args[0] in self.commands:  # the group's own options keep their defaults; the verb gets the rest
            command.parse_args(ctx, ["--"])
            # where the group's invoke looks for the verb (click < 8.2 names it protected_args)
            setattr(ctx, "_protected_args" if hasattr(ctx, "_protected_args") else "protected_args", args[:1])
            ctx.args = args[1:]
            return ctx.args
        ctx.allow_interspersed_args, ctx.allow_extra_args = True, False  # options before or after CHECKPOINT
        return command.parse_args(ctx, args)

    def get_params(self, ctx: typer.Context) -> list[Any]:
        params = super().get_params(ctx)  # a verb's usage line reads `lepton compress inspect …`, no CHECKPOINT
        return params if ctx.command is self else [p for p in params if p.name != "checkpoint"]

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        return ["[OPTIONS] CHECKPOINT", "|", "inspect PATH"]


compress_app = typer.Typer(
    cls=_CompressGroup,
    invoke_without_command=True,
    no_args_is_help=True,
    help="Compress a trained model into a small `.lep` file (prune → share → entropy-code), or inspect one.\n\n"
    "Examples:\n\n  lepton compress runs/demo/model.safetensors -o model.lep\n\n"
    "  lepton compress runs/demo/model.safetensors -c run.yaml --set compress.coder=huffman -o m.lep\n\n"
    "  lepton compress weights.pt --arch resnet20 --data digits --input-shape 1,8,8 -o resnet20.lep\n\n"
    "  lepton compress runs/demo/model.safetensors --set compress.channels.enabled=true -o m.lep  "
    "(remove channels first, for latency)\n\n"
    "  lepton compress runs/demo/model.safetensors --target-error 0.008 -o m.lep  "
    "(variational: the smallest file under 0.8% validation error)\n\n"
    "  lepton compress inspect model.lep",
)
app.add_typer(compress_app, name="compress")


@compress_app.callback()
def compress_checkpoint(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            help="a trained checkpoint (.safetensors with its .json sidecar), or a plain weight file with --arch",
            show_default=False,
        ),
    ] = None,
    out: Annotated[Path, out_option("the .lep file to write")] = Path("model.lep"),
    config: Annotated[Path | None, config_option("run YAML; its compress and train sections apply")] = None,
    data: Annotated[str | None, typer.Option(help="dataset [default: the one the checkpoint was trained on]")] = None,
    set_: Overrides = None,
    quiet: Quiet = False,
    fmt: FormatOpt = Format.table,
    trust_code: TrustCode = False,
    arch: Arch = None,
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    normalize_mean: NormalizeMean = None,
    normalize_std: NormalizeStd = None,
    device: Device = None,
    amp: AmpOpt = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="deep (magnitude pruning, the default) or variational (sparse variational dropout: learns what to "
            "keep, slower) [compress.method]",
            show_default=False,
        ),
    ] = None,
    target_bytes: Annotated[
        int | None,
        typer.Option(
            help="pick the variational operating point with the lowest validation error within N bytes "
            "(sets --method variational)",
            show_default=False,
        ),
    ] = None,
    target_error: Annotated[
        float | None,
        typer.Option(
            help="pick the smallest variational operating point whose validation error is at most E, a fraction "
            "(0.008 = 0.8%; sets --method variational)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Compress CHECKPOINT into OUT (.lep): prune, share weights, entropy-code; accuracy measured on the file."""
    if ctx.invoked_subcommand is not None:  # `lepton compress inspect …`: the verb does the work
        return
    if checkpoint is None:
        ctx.fail("Missing argument 'CHECKPOINT'.")
    from lepton.artifacts import load_model_file, trained_dataset, trained_source_options
    from lepton.compress.chain import compress_model
    from lepton.config import parse_overrides
    from lepton.data.sources import load_dataset
    from lepton.errors import ConfigError
    from lepton.pipeline.config import load_run_config
    from lepton.train.amp import training_device

    if out.suffix != ".lep":
        raise ConfigError(f"--out {out}: the compressed model file must end in .lep (e.g. -o model.lep).")
    if checkpoint.suffix == ".lep":
        raise ConfigError(f"CHECKPOINT {checkpoint}: already a .lep file; compress the checkpoint it came from.")
    output_file(out, "--out")
    input_file(checkpoint, "CHECKPOINT")
    spec = arch_spec(arch, input_shape, num_classes, normalize_mean, normalize_std)
    over = parse_overrides(set_ or [])
    for key, value in (("device", device), ("amp", amp)):
        if value is not None:
            over.setdefault("train", {})[key] = value
    targets = {k: v for k, v in (("target_bytes", target_bytes), ("target_error", target_error)) if v is not None}
    if targets and method not in (None, "variational"):
        raise ConfigError(f"--target-bytes/--target-error pick a variational operating point; drop --method {method}.")
    if method is not None or targets:
        over.setdefault("compress", {}).update({"method": method or "variational", **targets})
    cfg = load_run_config(config and input_file(config, "--config"), overrides=over)
    training_device(cfg.train.device, cfg.train.amp)  # fine-tuning runs there; refuse before any work
    loaded = load_model_file(checkpoint, trust_code=trust_code, arch=spec)
    dataset = load_dataset(
        data or trained_dataset(loaded.meta, checkpoint) or "mnist", trained_source_options(loaded.meta, checkpoint)
    )
    report = compress_model(
        loaded.model,
        loaded.spec,
        dataset,
        cfg.compress,
        cfg.train,
        out,
        progress=not quiet,
        trust_code=trust_code,
    )
    if fmt is Format.json:
        print_json(report.model_dump(mode="json"))
        return
    if report.variational is not None:
        print_table(
            [p.model_dump(exclude={"bits"}) for p in report.variational.frontier],
            "variational operating points (no fine-tuning; errors from each point's decoded bytes)",
        )
    print_table([s.model_dump() for s in report.steps], "dense → pruned → shared → coded")
    if report.channels is not None:
        ch = report.channels
        console.print(
            f"channels: {ch.params_before:,} -> {ch.params_after:,} params, {ch.macs_before:,} -> "
            f"{ch.macs_after:,} MACs, batch-1 latency {ch.latency_p50_ms_before:.3f} -> "
            f"{ch.latency_p50_ms_after:.3f} ms ({ch.speedup:.2f}x, 1 thread)"
        )
    console.print(
        f"wrote {out}: {report.file_bytes:,} bytes, {report.ratio:.1f}x smaller than fp32, test accuracy "
        f"{100 * report.test_accuracy:.2f}% (dense {100 * report.baseline_test_accuracy:.2f}%), "
        f"decoded bit-exact: {report.bit_exact}"
    )


# The old spelling `lepton compress model CHECKPOINT …`, kept working (hidden): the same function as the group.
compress_app.command("model", hidden=True)(compress_checkpoint)


@compress_app.command("inspect")
def inspect(
    path: Annotated[Path, typer.Argument(help="a .lep file")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Per-layer table of a .lep file: weights, % kept, bits per value and position, bytes, share of the file.

    Examples:
      lepton compress inspect runs/demo/model.lep
      lepton compress inspect model.lep --format json
    """
    from lepton.compress.container import inspect_lep

    rows = inspect_lep(input_file(path, "PATH"))
    if fmt is Format.json:
        print_json(rows)
        return
    print_table(rows, f"{path} ({path.stat().st_size:,} bytes)")
