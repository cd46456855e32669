"""`lepton quantum draw|train|export` as a user runs it: a subprocess, scikit-learn digits, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lepton.quantum.circuit_file import load_circuit
from lepton.quantum.qasm import to_qasm


def lepton(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lepton", "quantum", *args], capture_output=True, text=True, cwd=cwd, timeout=240
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_train_draw_export_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    r = lepton(
        "train",
        "--data",
        "digits",
        "--classes",
        "0,1",
        "--qubits",
        "3",
        "--layers",
        "1",
        "--epochs",
        "2",
        "--train-subset",
        "120",
        "-o",
        str(out),
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [m["model"].split()[0] for m in report["results"]] == ["hybrid", "logistic", "tiny"]
    tc = load_circuit(out)
    assert tc.circuit.n_qubits == 3 and tc.weights.shape == (1, 3, 3) and len(tc.sample_inputs) == 3
    drawn = lepton("draw", str(out))
    assert drawn.returncode == 0 and drawn.stdout.count("<Z>") == 3 and "w0" not in drawn.stdout
    qasm_path = tmp_path / "c.qasm"
    assert lepton("export", str(out), "--qasm", "3", "-o", str(qasm_path)).returncode == 0
    assert qasm_path.read_text() == to_qasm(tc.circuit, tc.weights, tc.sample_inputs, version=3)
    bad = lepton("export", str(out), "--inputs", "1,2")
    assert bad.returncode == 2 and "3 input values" in bad.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_draw_ansatz_and_bad_file(tmp_path: Path) -> None:
    r = lepton("draw", "--qubits", "2", "--layers", "1", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["n_qubits"] == 2
    (tmp_path / "x.json").write_text('{"format": "lepton-quantum-circuit", "version": 1, "circuit": {}}')
    r = lepton("export", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "damaged circuit file" in r.stderr and "Traceback" not in r.stderr
