"""The options every command spells the same way, declared once: ``--format``, ``-o/--out``, ``-q/--quiet``,
``--set``, ``-c/--config``, ``--trust-code``, ``--device`` and ``--amp``.

A command uses the alias (``fmt: FormatOpt = Format.table``) or, where the help names its own file, the
factory (``out: Annotated[Path, out_option("the .lep file to write")] = Path("model.lep")``), so a spelling
never drifts from one command to the next.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer


class Format(StrEnum):
    table = "table"
    json = "json"


def format_option(help: str = "table or json") -> Any:
    """``--format table|json``: rich tables for people, JSON for machines."""
    return typer.Option("--format", help=help)


def out_option(help: str) -> Any:
    """``-o/--out``: where the command writes its result; ``help`` names what is written."""
    return typer.Option("--out", "-o", help=help)


def config_option(help: str) -> Any:
    """``-c/--config``: a run YAML; ``help`` names the sections that apply."""
    return typer.Option("--config", "-c", help=help)


FormatOpt = Annotated[Format, format_option()]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")]
Overrides = Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE config override, repeatable")]
TrustCode = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        help="allow importing the package.module:factory that a model name or file asks for (runs its "
        "code); files Lepton saved carry their architecture as data and never need it",
    ),
]
Arch = Annotated[
    str | None,
    typer.Option(
        "--arch",
        help="the architecture of a plain weight file (a .pt from torch.save(model.state_dict()) or a "
        ".safetensors without Lepton's sidecar): a registry name (see `lepton info`) or package.module:factory "
        "(with --trust-code)",
        rich_help_panel="Plain weight files",
    ),
]
InputShape = Annotated[
    str | None,
    typer.Option(
        "--input-shape",
        help="C,H,W of --arch's input [default: 1,28,28]",
        show_default=False,
        rich_help_panel="Plain weight files",
    ),
]
NumClasses = Annotated[
    int | None,
    typer.Option(
        "--num-classes", help="--arch's outputs [default: 10]", show_default=False, rich_help_panel="Plain weight files"
    ),
]
NormalizeMean = Annotated[
    str | None,
    typer.Option(
        "--normalize-mean",
        help="the per-channel mean --arch's weights were trained to subtract from [0, 1] pixels, e.g. "
        "0.49,0.48,0.45 (with --normalize-std; stored with the model, applied by it)",
        show_default=False,
        rich_help_panel="Plain weight files",
    ),
]
NormalizeStd = Annotated[
    str | None,
    typer.Option(
        "--normalize-std",
        help="the per-channel std to divide by after subtracting --normalize-mean, e.g. 0.25,0.24,0.26",
        show_default=False,
        rich_help_panel="Plain weight files",
    ),
]

ImageSize = Annotated[
    int | None,
    typer.Option(
        help="image folders: resize (shorter side) and center-crop to SIZE x SIZE (default: the most common size)",
        show_default=False,
        rich_help_panel="Reading the data",
    ),
]
Channels = Annotated[
    str | None,
    typer.Option(
        help="image folders: auto (rgb if any image is colour), grey or rgb", rich_help_panel="Reading the data"
    ),
]
Layout = Annotated[
    str | None,
    typer.Option(
        help=".npz 4-D images: auto (detect), nchw (channels first) or nhwc (channels last)",
        rich_help_panel="Reading the data",
    ),
]

Device = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="where to compute: auto (cuda, else mps, else cpu), cpu, cuda, cuda:N or mps [default: auto]",
        show_default=False,
        rich_help_panel="Device",
    ),
]
AmpOpt = Annotated[
    str | None,
    typer.Option(
        "--amp",
        help="mixed-precision training: off, bf16 (CUDA, or CPU autocast) or fp16 (CUDA, with loss scaling) "
        "[default: off]",
        show_default=False,
        rich_help_panel="Device",
    ),
]
