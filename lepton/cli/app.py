"""The ``lepton`` command: one Typer app, one module per noun, user errors as one clean line."""

from __future__ import annotations

import errno
import math
import sys
from pathlib import Path
from typing import Any

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

# OSErrors that name a user's path: the user gave a folder, a missing file, a file they cannot read, …
_PATH_ERRNOS = {
    errno.ENOENT: "not found",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the file system is read-only",
    errno.EEXIST: "already exists",
    errno.ENOTEMPTY: "the folder is not empty",
}


def one_line(text: str) -> str:
    """``text`` with its lines joined by ``; `` (a message that spans lines is still one line on the terminal)."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def user_error(exc: BaseException) -> tuple[int, str] | None:
    """The exit status and the one line to print for an exception that is the user's doing; None for a bug.

    Used by :func:`main` and by the tests that run commands in-process, so both see the same outcome.
    """
    from pydantic import ValidationError

    if isinstance(exc, ResultOnOtherNode):  # a multi-node job that finished; rank 0's node holds the result
        return 0, one_line(str(exc))
    if isinstance(exc, LeptonError):
        return 2, f"error: {one_line(str(exc))}"
    if isinstance(exc, ValidationError):  # a typed config built from options: name the option, value and rule
        problems = [
            f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-') or exc.title} = {e.get('input')!r}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        return 2, f"error: {one_line('; '.join(problems))} (see --help for the allowed values)."
    if (
        isinstance(exc, OSError)
        and exc.errno in _PATH_ERRNOS
        and (exc.filename is not None or exc.errno == errno.ENOSPC)
    ):
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
        return 2, f"error: {where}: {_PATH_ERRNOS[exc.errno]}; check the path and try again."
    if isinstance(exc, MemoryError):
        return 2, (
            "error: not enough memory for this request; use smaller sizes (batch, iterations, subset) "
            f"and try again ({one_line(str(exc))})."
        )
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted; files already written are complete, nothing half-written was left."
    return None


def _finite(callback: Any) -> Any:
    """A parameter callback that refuses nan and ±inf before the command sees them."""

    def check(ctx: Any, param: Any, value: Any) -> Any:
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise typer.BadParameter(f"{value!r} is not a finite number; give a number such as 1.0.")
        return callback(ctx, param, value) if callback is not None else value

    return check


def _is_path(param: Any) -> bool:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return annotation is Path or Path in getattr(annotation, "__args__", ())


def _no_empty_path(param: Any) -> None:
    """Refuse ``""`` for a path parameter as a usage error (``Path("")`` would silently mean the current folder)."""
    process = param.process_value

    def process_value(ctx: Any, value: Any) -> Any:
        if value == "" or (isinstance(value, (list, tuple)) and "" in value):
            raise typer.BadParameter("an empty path; give a file or folder name.", ctx=ctx, param=param)
        return process(ctx, value)

    param.process_value = process_value


def cli_command() -> Any:
    """The click command behind ``lepton``, every command registered; nan/inf and empty paths are usage errors."""
    from lepton.cli import commands  # noqa: F401  (registers the commands on ``app``)

    root = typer.main.get_command(app)
    todo = [root]
    while todo:
        cmd = todo.pop()
        todo += list(getattr(cmd, "commands", {}).values())
        for param in cmd.params:
            if getattr(param, "_lepton_checked", False):
                continue
            param.callback, param._lepton_checked = _finite(param.callback), True
            if _is_path(param):
                _no_empty_path(param)
    return root


def main() -> None:
    """Console-script entry point: exit 2 with ``error: …`` for user errors, 130 on Ctrl-C."""
    try:
        cli_command()(prog_name="lepton")
    except (Exception, KeyboardInterrupt) as e:
        outcome = user_error(e)
        if outcome is None:
            raise
        status, message = outcome
        print(message, file=sys.stderr)
        sys.exit(status)
