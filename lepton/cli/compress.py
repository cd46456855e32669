"""``lepton compress``: compress a checkpoint into a `.lep` file; ``lepton compress inspect`` a `.lep` file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from lepton.cli.app import app
from lepton.cli.checks import input_file, output_file
from lepton.cli.output import Format, TrustCode, console, print_json, print_table


class _DefaultCommandGroup(TyperGroup):
    """``lepton compress CHECKPOINT …`` runs the hidden ``model`` command; named subcommands still work."""

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[Any, Any, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["model", *args]
        return super().resolve_command(ctx, args)


compress_app = typer.Typer(
    cls=_DefaultCommandGroup, no_args_is_help=True,
    help="Compress a trained model into a small `.lep` file (prune → share → entropy-code), or inspect one.\n\n"
         "Examples:\n\n  lepton compress runs/demo/model.safetensors -o model.lep\n\n"
         "  lepton compress runs/demo/model.safetensors -c run.yaml --set compress.coder=huffman -o m.lep\n\n"
         "  lepton compress inspect model.lep")
app.add_typer(compress_app, name="compress")


@compress_app.command("model", hidden=True)
def compress_checkpoint(
    checkpoint: Annotated[Path, typer.Argument(help="a trained checkpoint (.safetensors with its .json sidecar)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the .lep file to write")] = Path("model.lep"),
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="run YAML; its compress and train sections apply")] = None,
    data: Annotated[Optional[str], typer.Option(help="dataset [default: the one the checkpoint was trained on]")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE config override, repeatable")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
    fmt: Annotated[Format, typer.Option("--format", help="table or json")] = Format.table,
    trust_code: TrustCode = False,
) -> None:
    """Compress CHECKPOINT into OUT (.lep): prune, share weights, entropy-code; accuracy measured on the file."""
    from lepton.compress.chain import compress_model
    from lepton.config import parse_overrides
    from lepton.data.sources import load_dataset
    from lepton.errors import ConfigError
    from lepton.artifacts import trained_dataset
    from lepton.pipeline.config import load_run_config
    from lepton.train.checkpoint import load_checkpoint

    if out.suffix != ".lep":
        raise ConfigError(f"--out {out}: the compressed model file must end in .lep (e.g. -o model.lep).")
    output_file(out, "--out")
    input_file(checkpoint, "CHECKPOINT")
    cfg = load_run_config(config and input_file(config, "--config"), overrides=parse_overrides(set_ or []))
    ckpt = load_checkpoint(checkpoint)
    dataset = load_dataset(data or trained_dataset(ckpt.meta, checkpoint) or "mnist")
    report = compress_model(ckpt.build_model(trust_code=trust_code), ckpt.spec, dataset, cfg.compress, cfg.train, out,
                            progress=not quiet, trust_code=trust_code)
    if fmt is Format.json:
        print_json(report.model_dump(mode="json"))
        return
    print_table([s.model_dump() for s in report.steps], "dense → pruned → shared → coded")
    console.print(f"wrote {out}: {report.file_bytes:,} bytes, {report.ratio:.1f}x smaller than fp32, test accuracy "
                  f"{100 * report.test_accuracy:.2f}% (dense {100 * report.baseline_test_accuracy:.2f}%), "
                  f"decoded bit-exact: {report.bit_exact}")


@compress_app.command("inspect")
def inspect(
    path: Annotated[Path, typer.Argument(help="a .lep file")],
    fmt: Annotated[Format, typer.Option("--format", help="table or json")] = Format.table,
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
