"""Run ``lepton ARGS`` in-process with the outcome ``lepton`` itself would have (``lepton.cli.app.main``)."""

from __future__ import annotations

import signal
import traceback
from dataclasses import dataclass
from unittest import mock

from typer.testing import CliRunner

from lepton.cli.app import cli_command, user_error


class Hung(Exception):
    """The command ran past its time guard (e.g. blocked opening a FIFO)."""


@dataclass
class Outcome:
    code: int
    kind: str  # ok | usage (click's own usage error box) | user (one-line error) | crash (a traceback) | hung
    message: str  # the error line main() prints; for usage errors, click's text; for crashes, the traceback
    stdout: str
    exception: BaseException | None = None


def invoke(args: list[str], timeout: float = 60.0) -> Outcome:
    """``args`` through the same click command and error mapping as the console script, under a SIGALRM guard."""

    def alarm(signum, frame):  # noqa: ANN001
        raise Hung(f"lepton {' '.join(args)} ran longer than {timeout} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with mock.patch("typer.testing._get_command", lambda cmd: cmd):
            r = CliRunner().invoke(cli_command(), args, prog_name="lepton")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    exc = r.exception
    if exc is None or (isinstance(exc, SystemExit) and r.exit_code == 0):
        return Outcome(0, "ok", "", r.stdout)
    if isinstance(exc, SystemExit):
        return Outcome(r.exit_code, "usage" if r.exit_code == 2 else "crash", r.stderr, r.stdout)
    if isinstance(exc, Hung):
        return Outcome(1, "hung", str(exc), r.stdout)
    outcome = user_error(exc)
    if outcome is None:
        return Outcome(1, "crash", "".join(traceback.format_exception(exc)), r.stdout, exc)
    return Outcome(outcome[0], "user", outcome[1], r.stdout, exc)
