"""The trained-circuit file: a round trip, and forged files refused with one clear FormatError line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lepton.errors import ConfigError, FormatError
from lepton.quantum.circuit import variational_circuit
from lepton.quantum.circuit_file import TrainedCircuit, load_circuit, save_circuit


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    circuit = variational_circuit(2, 1)
    path = tmp_path / "c.json"
    save_circuit(
        path,
        TrainedCircuit(
            circuit, torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(1, 2, 3), [0.25, -0.5], {"dataset": "digits"}
        ),
    )
    return path


def test_round_trip(saved: Path) -> None:
    tc = load_circuit(saved)
    assert torch.equal(tc.weights.reshape(-1), torch.linspace(-1, 1, 6, dtype=torch.float64))
    assert tc.sample_inputs == [0.25, -0.5] and tc.meta == {"dataset": "digits"}


def _forge(path: Path, text: str | None = None, **fields: object) -> None:
    if text is None:
        doc = json.loads(path.read_text())
        doc.update(fields)
        text = json.dumps(doc)
    path.write_text(text)


@pytest.mark.parametrize(
    "edit, needle",
    [
        ({"weights": [0, 0, 0, "nan", 0, 0]}, "weights holds nan; expected finite numbers"),
        ({"weights": [0, 0, 0, 0, True, 0]}, "weights holds True"),
        ({"weights": [0, 0, 0, 0, None, 0]}, "weights holds None"),
        ({"weights": [0, 0, 0, 0, 10**400, 0]}, "weights holds 1000"),
        ({"weights": 5}, "weights must be a JSON array"),
        ({"sample_inputs": [0.1, "inf"]}, "sample_inputs holds inf"),
        ({"sample_inputs": {"a": 1}}, "sample_inputs must be a JSON array"),
        ({"meta": [1, 2]}, "the key 'meta' must be a JSON object"),
        ({"circuit": 5}, "the key 'circuit' must be a JSON object"),
        ({"circuit": {}}, "damaged circuit file"),
    ],
)
def test_forged_fields_are_refused(saved: Path, edit: dict, needle: str) -> None:
    _forge(saved, **edit)
    with pytest.raises(FormatError, match="c.json") as info:
        load_circuit(saved)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "token, needle",
    [
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ("1e999", "1e999, which overflows"),
        ("-1e400", "overflows"),
    ],
)
def test_non_finite_json_numbers_are_refused(saved: Path, token: str, needle: str) -> None:
    doc = json.loads(saved.read_text())
    for key in ("weights", "sample_inputs"):
        _forge(saved, json.dumps({**doc, key: "@"}).replace('"@"', "[" + token + "]"))
        with pytest.raises(FormatError, match=needle):
            load_circuit(saved)


def test_deep_nesting_and_duplicates_are_refused(saved: Path) -> None:
    doc = json.loads(saved.read_text())
    _forge(saved, json.dumps({**doc, "meta": "@"}).replace('"@"', "[" * 100_000 + "]" * 100_000))
    with pytest.raises(FormatError, match="100001 levels deep"):
        load_circuit(saved)
    _forge(saved, json.dumps(doc)[:-1] + ', "version": 1}')
    with pytest.raises(FormatError, match="duplicate JSON key 'version'"):
        load_circuit(saved)


def test_non_finite_weights_are_refused_on_save(tmp_path: Path) -> None:
    circuit = variational_circuit(2, 1)
    with pytest.raises(ConfigError, match="NaN or infinity"):
        save_circuit(tmp_path / "c.json", TrainedCircuit(circuit, torch.full((1, 2, 3), float("nan"))))
    assert not (tmp_path / "c.json").exists()
