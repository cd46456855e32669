"""Reading a run config stays cheap: ``import lepton.pipeline.config`` loads no ML runtime and takes under a second.

The CLI validates configs (``lepton run --dry-run``, ``--set`` errors) before any heavy work; the stage-only
sections live in ``lepton.pipeline.config`` and the packages on the way re-export lazily (``lepton.utils.lazy``).
"""

import json
import statistics
import subprocess
import sys

HEAVY = ("onnxruntime", "onnx", "matplotlib", "numba", "torch")
PROBE = f"""
import json, sys, time
t0 = time.perf_counter()
import lepton.pipeline.config
seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def _probe() -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.splitlines()[-1])


def test_run_config_imports_no_ml_runtime_in_under_a_second():
    runs = [_probe() for _ in range(3)]
    assert runs[0]["loaded"] == [], f"import lepton.pipeline.config loaded {runs[0]['loaded']}"
    median = statistics.median(r["seconds"] for r in runs)
    assert median < 1.0, f"import lepton.pipeline.config took {median:.2f} s (median of 3), expected < 1 s"
