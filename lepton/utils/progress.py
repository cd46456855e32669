"""The one progress-bar style of Lepton's long steps: what, bar, done/total, elapsed, time left, a status.

The training loop, the sensitivity scan, int8 calibration, the data stage's codec work and the fitting of a
learned codec (``lepton-cm``) all show this
bar on stderr; it is transient (gone when the step ends, so logs keep only the summary lines) and
``enabled=False`` (quiet mode) shows nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
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


def fit_task(bar: Progress, what: str) -> Callable[[str, float, float], None]:
    """A ``fit_progress(field, done, total)`` callback (see :func:`lepton.data.codecs.fit_codec`) that shows a
    codec's fit to ``field`` as its own task on ``bar``, described ``"{what} {field}"``: added at the first
    call (a codec that learns nothing shows none) and removed when ``done`` reaches ``total``.

    Args:
        bar: a bar from :func:`progress_bar` (a disabled one shows nothing).
        what: the start of the task's description, e.g. ``"fit the codec of"``.

    Returns:
        The callback.
    """
    tasks: dict[str, TaskID | None] = {}  # None: that fit has ended

    def report(field: str, done: float, total: float) -> None:
        if field not in tasks:
            tasks[field] = bar.add_task(f"{what} {field}", total=total, status="")
        task = tasks[field]
        if task is not None:
            bar.update(task, completed=done, total=total)
            if done >= total:
                bar.remove_task(task)
                tasks[field] = None

    return report
