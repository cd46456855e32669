"""The one progress-bar style of Lepton's long steps: what, bar, done/total, elapsed, time left, a status.

The training loop, the sensitivity scan, int8 calibration and the data stage's codec work all show this
bar on stderr; it is transient (gone when the step ends, so logs keep only the summary lines) and
``enabled=False`` (quiet mode) shows nothing at all.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(console: Console | None = None, *, enabled: bool = True) -> Progress:
    """A transient rich ``Progress`` in Lepton's style; use as a context manager.

    Args:
        console: where it draws (default: a console on stderr).
        enabled: False shows nothing (quiet mode).

    Returns:
        The ``Progress``; add tasks with ``add_task(description, total=N, status="")`` and update the
        ``status`` field with a short live figure (a loss, an accuracy).
    """
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console or Console(stderr=True, quiet=not enabled),
        transient=True,
        disable=not enabled,
    )
