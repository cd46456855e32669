"""``lepton registry push|pull|list``: versioned model artifacts in a folder or S3.

``lepton push`` and ``lepton pull`` are kept as short aliases of ``lepton registry push|pull`` (hidden from the
top-level help, so each verb is listed once).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from lepton.cli.app import app
from lepton.cli.checks import input_file
from lepton.cli.options import Format, FormatOpt, out_option
from lepton.cli.output import console, print_json, print_table

registry_app = typer.Typer(
    no_args_is_help=True, help="Publish, fetch and list versioned model artifacts in a folder or s3://bucket/prefix."
)
app.add_typer(registry_app, name="registry")

_URL_HELP = (
    "ROOT/NAME[:VERSION]: ROOT is a folder, file:///path or s3://bucket/prefix (endpoint from "
    "AWS_ENDPOINT_URL); a bare NAME[:VERSION] uses $LEPTON_REGISTRY or the Lepton cache's registry"
)


def _metrics(pairs: list[str], path: Path | None) -> dict[str, float | int | str]:
    from lepton.errors import ConfigError
    from lepton.utils import strict_json

    out: dict[str, float | int | str] = {}
    if path is not None:
        input_file(path, "--metrics")
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"--metrics {path}: cannot read it ({e.strerror}); give a JSON file of metrics.") from e
        data = strict_json.loads(raw, f"--metrics {path}")
        if not isinstance(data, dict) or not all(
            isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in data.values()
        ):
            raise ConfigError(f"--metrics {path}: expected a flat JSON object of numbers or strings.")
        out.update(data)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--metric {pair!r}: write KEY=VALUE, e.g. --metric test_accuracy=0.991.")
        try:
            out[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            out[key] = value
    return out


@registry_app.command("push")
@app.command("push", hidden=True)
def push(
    artifact: Annotated[Path, typer.Argument(help="the .onnx or .lep file to publish")],
    url: Annotated[str, typer.Argument(help=_URL_HELP + "; without :VERSION the next integer version is used")],
    metric: Annotated[list[str] | None, typer.Option("--metric", help="KEY=VALUE for the manifest, repeatable")] = None,
    metrics: Annotated[Path | None, typer.Option(help="a flat JSON object of metrics for the manifest")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Publish ARTIFACT as an immutable version with a manifest (name, version, sha256, size, metrics).

    ARTIFACT is checked first: a .lep must decode, an .onnx must pass the ONNX checker. A blob already in the
    registry is re-hashed and replaced if damaged, so pushing again repairs a corrupted artifact.

    Examples:
      lepton registry push model.onnx ./registry/lenet5:1 --metric test_accuracy=0.991
      lepton registry push model.lep s3://my-bucket/models/lenet5
      lepton push model.int8.onnx lenet5-int8        # the short alias
    """
    from lepton.edge.registry import push as push_artifact

    m = push_artifact(input_file(artifact, "ARTIFACT"), url, metrics=_metrics(metric or [], metrics))
    if fmt is Format.json:
        print_json(m.model_dump(mode="json"))
        return
    console.print(f"published {m.name}:{m.version} ({m.size:,} bytes, sha256 {m.sha256[:16]}…)", highlight=False)


@registry_app.command("pull")
@app.command("pull", hidden=True)
def pull(
    url: Annotated[str, typer.Argument(help=_URL_HELP + "; without :VERSION the latest push is fetched")],
    out: Annotated[Path | None, out_option("file or folder [default: current folder]")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Fetch a published artifact; it appears only after its size and SHA-256 match the manifest.

    Examples:
      lepton registry pull ./registry/lenet5:1 -o model.onnx
      lepton pull s3://my-bucket/models/lenet5 -o models/
    """
    from lepton.edge.registry import RegistryWarning
    from lepton.edge.registry import pull as pull_artifact

    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always", RegistryWarning)
        m, path = pull_artifact(url, out)
    for w in skipped:  # a skipped version: one clear line; anything else as Python would show it
        if issubclass(w.category, RegistryWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if fmt is Format.json:
        print_json({"path": str(path), "manifest": m.model_dump(mode="json")})
        return
    console.print(f"pulled {m.name}:{m.version} to {path} ({m.size:,} bytes, sha256 verified)", highlight=False)


@registry_app.command("list")
def list_artifacts(
    root: Annotated[
        str | None, typer.Argument(help="a folder or s3://bucket/prefix [default: $LEPTON_REGISTRY]")
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List every published version with its size and metrics.

    Examples:
      lepton registry list ./registry
      lepton registry list s3://my-bucket/models --format json
    """
    from lepton.edge.registry import Registry, default_registry

    reg = Registry(root or default_registry())
    rows = []
    for name in reg.names():
        good, bad = reg.scan(name)  # a bad manifest is reported and skipped, never hides the other versions
        rows += [
            {
                "name": m.name,
                "version": m.version,
                "kind": m.kind,
                "bytes": m.size,
                "sha256": m.sha256[:12],
                "created": m.created,
                "metrics": json.dumps(m.metrics),
            }
            for m in good
        ]
        for problem in bad.values():
            print(f"warning: {problem}; not listed.", file=sys.stderr)
    if fmt is Format.json:
        print_json(rows)
        return
    print_table(rows, reg.store.url) if rows else console.print(f"{reg.store.url}: no published artifacts")
