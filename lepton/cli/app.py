"""The ``lepton`` command: one Typer app, one module per noun, user errors as one clean line."""

from __future__ import annotations

import sys

import typer

from lepton.errors import LeptonError, ResultOnOtherNode

app = typer.Typer(
    name="lepton",
    help="Lepton: make deep-learning models and their data cheap to store, move, train and run.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def main() -> None:
    """Console-script entry point: exit 2 with ``error: …`` for user errors, 130 on Ctrl-C."""
    from lepton.cli import commands  # noqa: F401  (registers the commands on ``app``)

    try:
        app()
    except ResultOnOtherNode as e:  # a multi-node job that finished; rank 0's node holds the result
        print(str(e), file=sys.stderr)
        sys.exit(0)
    except LeptonError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; files already written are complete, nothing half-written was left.", file=sys.stderr)
        sys.exit(130)
