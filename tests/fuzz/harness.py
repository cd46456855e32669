"""Mutation fuzzing of every Lepton file reader, run by ``python -m tests.fuzz`` (``make fuzz``).

The contract under test: every bad file ends as a :class:`lepton.errors.LeptonError` with a clear message —
never another exception, a hang, a big allocation, or code named by the file being run. Cases run in a pool
of long-lived workers (``tests/fuzz/worker.py``) under a memory ceiling; this module hands out case ids,
enforces the per-case timeout, checks for the marker file forged specs try to create, and reports.

Outcomes: ``ok`` (accepted), ``refused`` (a LeptonError), ``unexpected`` (any other exception, or invalid
output from an accepted file), ``hang`` (past the timeout: the worker is killed and restarted), ``memory``
(MemoryError, an allocation failure under the ceiling, or the worker dying), ``code-ran`` (the marker
appeared), and ``harness-error`` (building the mutant failed: a bug here). Any but the first two fails the run.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.fuzz.mutate import MARKER

REPO = Path(__file__).resolve().parents[2]
FORMATS = ("lep", "lds", "ckpt", "registry", "circuit", "pt", "safetensors")
OUTCOMES = ("ok", "refused", "unexpected", "hang", "memory", "code-ran", "harness-error")
BAD = ("unexpected", "hang", "memory", "code-ran", "harness-error")
HEADROOM_MB = 256
RECYCLE_AFTER = 3000  # cases per worker before a fresh one: no slow drift towards the memory ceiling


def case_ids(counts: dict[str, int], seed: int) -> list[str]:
    return [f"{fmt}:{seed}:{i}" for fmt, n in counts.items() for i in range(n)]


class Worker:
    """One worker process in its own folder and session (so that a kill takes its children too)."""

    def __init__(self, n: int, run_dir: Path, seeds_json: Path) -> None:
        self.dir = run_dir / f"worker{n}"
        self.log = run_dir / f"worker{n}.log"
        self.args = [sys.executable, "-m", "tests.fuzz.worker", str(seeds_json), str(self.dir), str(HEADROOM_MB)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.case: dict[str, Any] | None = None
        self.deadline = 0.0
        self.done = 0

    def start(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "MALLOC_ARENA_MAX": "2",
            "OMP_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                cwd=REPO,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self.case, self.done = None, 0

    def wait_ready(self, timeout: float = 600.0) -> None:
        line = self._readline(timeout)
        if not line or "ready" not in json.loads(line):
            raise RuntimeError(f"fuzz worker did not start; see its log:\n{self.log.read_text()[-3000:]}")

    def _readline(self, timeout: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            return self.proc.stdout.readline() if sel.select(timeout) else b""

    def answered(self) -> bool:
        """Whether the worker's answer (or its end) is waiting to be read."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.stdout, selectors.EVENT_READ)
            return bool(sel.select(0))

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout

    def send(self, case_id: str, timeout: float, full: bool) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.case = {"id": case_id, "full": full}
        self.deadline = time.monotonic() + timeout
        self.proc.stdin.write((json.dumps(self.case) + "\n").encode())
        self.proc.stdin.flush()

    def marker(self) -> bool:
        """Whether a case created the marker; removes it."""
        path = self.dir / MARKER
        found = path.exists() or path.is_symlink()
        if path.is_dir():
            shutil.rmtree(path)
        elif found:
            path.unlink()
        return found

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    f.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
        self.wait_ready()


@dataclass
class Report:
    results: list[dict[str, Any]]
    seconds: float
    counts: dict[str, Counter] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = {}
        for r in self.results:
            self.counts.setdefault(r["id"].split(":")[0], Counter())[r["outcome"]] += 1

    @property
    def bad(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["outcome"] in BAD]

    def distinct(self) -> list[dict[str, Any]]:
        """The bad outcomes grouped by (outcome, exception type, Lepton frame): count, formats, one example."""
        groups: dict[tuple, dict[str, Any]] = {}
        for r in self.bad:
            key = (r["outcome"], r.get("type", ""), r.get("where", ""))
            g = groups.setdefault(
                key, {"outcome": key[0], "type": key[1], "where": key[2], "count": 0, "formats": set(), "example": r}
            )
            g["count"] += 1
            g["formats"].add(r["id"].split(":")[0])
        return sorted(groups.values(), key=lambda g: (-g["count"], g["outcome"]))

    def table(self) -> str:
        rows = [f"{'format':<10}" + "".join(f"{o:>14}" for o in OUTCOMES) + f"{'total':>8}"]
        for fmt, c in self.counts.items():
            rows.append(f"{fmt:<10}" + "".join(f"{c[o]:>14}" for o in OUTCOMES) + f"{sum(c.values()):>8}")
        return "\n".join(rows)

    def summary(self) -> str:
        lines = [self.table(), f"{len(self.results)} cases in {self.seconds:.0f} s"]
        for g in self.distinct():
            ex = g["example"]
            lines.append(
                f"\n[{g['outcome']}] x{g['count']} ({', '.join(sorted(g['formats']))}) "
                f"{g['type']} at {g['where']}\n    {ex.get('message', '')[:160]!r}\n"
                f"    reproduce: python -m tests.fuzz --case {ex['id']}   ({ex.get('note', '')[:120]})"
            )
        return "\n".join(lines)


def _finish(w: Worker, result: dict[str, Any], results: list[dict[str, Any]]) -> None:
    if w.marker():
        result = {**result, "outcome": "code-ran", "was": result["outcome"]}
    results.append(result)
    w.case = None
    w.done += 1


def run_cases(
    ids: Iterable[str],
    *,
    workers: int = 2,
    timeout: float = 5.0,
    full: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Run every case id in a pool of ``workers``; temporary files are removed afterwards."""
    from tests.fuzz.seeds import write_seeds

    t0 = time.monotonic()
    queue = deque(ids)
    total, results = len(queue), []
    with tempfile.TemporaryDirectory(prefix="lepton-fuzz-") as tmp:
        run_dir = Path(tmp)
        seeds_json = run_dir / "seeds.json"
        seeds_json.write_text(json.dumps({k: [str(p) for p in v] for k, v in write_seeds(run_dir / "seeds").items()}))
        pool = [Worker(n, run_dir, seeds_json) for n in range(min(workers, max(1, total)))]
        try:
            for w in pool:
                w.start()
            for w in pool:
                w.wait_ready()
            _loop(pool, queue, results, timeout, full, lambda: progress and progress(len(results), total))
        finally:
            for w in pool:
                w.stop()
    return Report(results, time.monotonic() - t0)


def _loop(pool: list[Worker], queue: deque, results: list, timeout: float, full: bool, tick: Callable[[], Any]) -> None:
    with selectors.DefaultSelector() as sel:
        while queue or any(w.case for w in pool):
            for w in pool:
                if w.case is None and queue:
                    if w.done >= RECYCLE_AFTER:
                        w.restart()
                    w.send(queue.popleft(), timeout, full)
                    sel.register(w.stdout, selectors.EVENT_READ, w)
            wait = max(0.0, min(w.deadline for w in pool if w.case) - time.monotonic())
            for key, _ in sel.select(wait):
                w = key.data
                line = w.stdout.readline()
                sel.unregister(w.stdout)
                if line:
                    _finish(w, json.loads(line), results)
                else:  # the worker died mid-case (killed by the kernel, aborted, or the case exited it)
                    code = w.proc.wait() if w.proc else None
                    _finish(
                        w,
                        {
                            **w.case,
                            "outcome": "memory",
                            "type": "WorkerDied",
                            "where": f"exit code {code}",
                            "message": f"the worker died (exit code {code})",
                        },
                        results,
                    )
                    w.restart()
                tick()
            for w in pool:  # an answer already waiting (e.g. while another worker restarted) is not a hang
                if w.case and time.monotonic() > w.deadline and not w.answered():
                    sel.unregister(w.stdout)
                    w.stop()
                    _finish(
                        w,
                        {
                            **w.case,
                            "outcome": "hang",
                            "type": "Timeout",
                            "where": f"> {timeout:g} s",
                            "message": f"no answer within {timeout:g} s",
                        },
                        results,
                    )
                    w.restart()
                    tick()


def save_case(case_id: str, out: Path) -> str:
    """Write case ``case_id``'s mutant into ``out`` (with its seeds), for reproducing it by hand."""
    from tests.fuzz.formats import build_case
    from tests.fuzz.seeds import write_seeds

    fmt, seed, index = case_id.split(":")
    seeds = write_seeds(out / "seeds")
    dest = out / case_id.replace(":", "-")
    dest.mkdir(parents=True, exist_ok=True)
    path, note = build_case(fmt, int(seed), int(index), seeds, dest)
    return f"{path}: {note}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tests.fuzz",
        description=__doc__.split("\n\n")[0],
        epilog="examples:\n  python -m tests.fuzz --cases-lep 200 --cases-lds 100 "
        "--cases-other 50\n  python -m tests.fuzz --case lep:0:1234\n"
        "  python -m tests.fuzz --case lep:0:1234 --save /tmp/case",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cases-lep", type=int, default=10_000)
    p.add_argument("--cases-lds", type=int, default=5_000)
    p.add_argument(
        "--cases-other", type=int, default=1_000, help="cases each for ckpt, registry, circuit, pt and safetensors"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per case before it counts as a hang")
    p.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset of " + ",".join(FORMATS))
    p.add_argument("--case", action="append", help="run only this case id (repeatable) and show its traceback")
    p.add_argument("--save", type=Path, help="with --case: write the mutant files here instead of running them")
    p.add_argument("--json", type=Path, help="also write every result to this JSON file")
    a = p.parse_args(argv)
    if a.case and a.save:
        for case in a.case:
            print(save_case(case, a.save))
        return 0
    if a.case:
        report = run_cases(a.case, workers=1, timeout=a.timeout, full=True)
        for r in report.results:
            print(json.dumps({k: v for k, v in r.items() if k != "traceback"}, indent=1))
            print(r.get("traceback", ""))
        return 1 if report.bad else 0
    sizes = {
        "lep": a.cases_lep,
        "lds": a.cases_lds,
        "ckpt": a.cases_other,
        "registry": a.cases_other,
        "circuit": a.cases_other,
        "pt": a.cases_other,
        "safetensors": a.cases_other,
    }
    counts = {f: sizes[f] for f in a.formats.split(",")}
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] > 15 or done == total:
            last[0] = time.monotonic()
            print(f"  {done}/{total} cases", file=sys.stderr, flush=True)

    report = run_cases(case_ids(counts, a.seed), workers=a.workers, timeout=a.timeout, progress=progress)
    print(report.summary())
    if a.json:
        a.json.write_text(json.dumps({"seconds": report.seconds, "results": report.results}, indent=1))
    return 1 if report.bad else 0
