"""``lepton quantum``: draw a variational circuit, train a hybrid PCA → quantum classifier, export OpenQASM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lepton.cli.app import app
from lepton.cli.checks import input_file, make_config, output_file
from lepton.cli.options import Device, Format, FormatOpt, format_option, out_option
from lepton.cli.output import print_json, print_table

quantum_app = typer.Typer(
    no_args_is_help=True,
    help="Simulated variational quantum circuits (no quantum speed-up is claimed).\n\n"
    "Examples:\n\n  lepton quantum draw --qubits 4 --layers 2\n\n"
    "  lepton quantum train --data mnist --classes 0,1,2,3 -o circuit.json\n\n"
    "  lepton quantum draw circuit.json\n\n"
    "  lepton quantum export circuit.json --qasm 3 -o circuit.qasm",
)
app.add_typer(quantum_app, name="quantum")


def _classes(text: str) -> list[int]:
    from lepton.errors import ConfigError

    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--classes {text!r}: expected comma-separated labels, e.g. --classes 0,1,2,3.") from None


@quantum_app.command("draw")
def draw_cmd(
    circuit_file: Annotated[Path | None, typer.Argument(help="a trained circuit (.json from `quantum train`)")] = None,
    qubits: Annotated[int, typer.Option(help="ansatz qubits (without CIRCUIT_FILE)")] = 4,
    layers: Annotated[int, typer.Option(help="ansatz layers (without CIRCUIT_FILE)")] = 2,
    rotation: Annotated[str, typer.Option(help="rot (RZ·RY·RZ) or ry")] = "rot",
    entangler: Annotated[str, typer.Option(help="cnot or cz ring")] = "cnot",
    reupload: Annotated[bool, typer.Option(help="re-encode the inputs before every layer")] = False,
    fmt: Annotated[Format, format_option("table (text drawing) or json (the circuit as data)")] = Format.table,
) -> None:
    """Draw CIRCUIT_FILE with its trained angles, or the standard ansatz given by the options."""
    from lepton.quantum.circuit import draw, variational_circuit
    from lepton.quantum.circuit_file import load_circuit

    if circuit_file is not None:
        tc = load_circuit(input_file(circuit_file, "CIRCUIT_FILE"))
        circuit, weights = tc.circuit, tc.weights
    else:
        circuit = variational_circuit(
            qubits,
            layers,
            rotation=rotation,
            entangler=entangler,  # type: ignore[arg-type]
            reupload=reupload,
        )
        weights = None
    if fmt is Format.json:
        print_json(circuit.to_dict())
        return
    print(draw(circuit, weights))


@quantum_app.command("train")
def train_cmd(
    out: Annotated[Path, out_option("where to write the trained circuit (.json)")] = Path("circuit.json"),
    data: Annotated[str, typer.Option(help="dataset (mnist, fashion-mnist, digits, …)")] = "mnist",
    classes: Annotated[str, typer.Option(help="comma-separated labels to classify")] = "0,1,2,3",
    qubits: Annotated[int, typer.Option(help="PCA components = qubits")] = 8,
    layers: Annotated[int, typer.Option(help="variational layers")] = 3,
    reupload: Annotated[bool, typer.Option(help="re-encode the inputs before every layer")] = False,
    epochs: Annotated[int, typer.Option(help="training epochs")] = 5,
    batch_size: Annotated[int, typer.Option(help="samples per step")] = 256,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 0.05,
    train_subset: Annotated[int | None, typer.Option(help="use only the first N training samples")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    device: Device = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Train PCA → quantum → linear beside logistic regression and a tiny MLP on the same features.

    Writes the trained circuit (and the first test sample's input angles) to OUT for `draw` and `export`.
    """
    from lepton.data.sources import load_dataset
    from lepton.quantum.experiment import train_circuit
    from lepton.quantum.hybrid import HybridConfig
    from lepton.utils.device import resolve_device

    output_file(out, "--out")
    cfg = make_config(
        HybridConfig,
        {"n_qubits": "--qubits", "n_layers": "--layers", "classes": "--classes"},
        classes=_classes(classes),
        n_qubits=qubits,
        n_layers=layers,
        reupload=reupload,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        train_subset=train_subset,
        seed=seed,
        device=device or "auto",
    )
    resolve_device(cfg.device)  # a device this machine lacks fails before the data loads
    report = train_circuit(load_dataset(data), cfg, out, dataset_label=data).hybrid
    if fmt is Format.json:
        print_json(report.model_dump(mode="json", exclude={"circuit_spec", "weights"}))
        return
    print_table(
        [
            {
                "model": r.model,
                "params": r.params,
                "test accuracy": f"{r.test_accuracy:.2%}",
                "s/epoch": round(r.seconds_per_epoch, 2),
            }
            for r in report.results
        ],
        f"{data} classes {cfg.classes}, {report.features}, {report.n_train} train / {report.n_test} test",
    )
    print(f"trained circuit written to {out}")


@quantum_app.command("export")
def export_cmd(
    circuit_file: Annotated[Path, typer.Argument(help="a trained circuit (.json from `quantum train`)")],
    out: Annotated[Path | None, out_option("the .qasm file [default: print]")] = None,
    qasm: Annotated[int, typer.Option(help="OpenQASM version, 2 or 3")] = 2,
    inputs: Annotated[
        str | None, typer.Option(help="comma-separated input angles [default: the stored sample]")
    ] = None,
) -> None:
    """Export CIRCUIT_FILE as OpenQASM with its trained angles and one sample's inputs bound."""
    from lepton.errors import ConfigError
    from lepton.quantum.circuit_file import load_circuit
    from lepton.quantum.qasm import to_qasm
    from lepton.utils.io import atomic_write_text

    if out is not None:
        output_file(out, "--out")
    tc = load_circuit(input_file(circuit_file, "CIRCUIT_FILE"))
    values = tc.sample_inputs
    if inputs is not None:
        try:
            values = [float(v) for v in inputs.split(",")]
        except ValueError:
            raise ConfigError(f"--inputs {inputs!r}: expected comma-separated numbers.") from None
    if values is None and tc.circuit.n_inputs:
        raise ConfigError(f"{circuit_file} stores no sample inputs; pass --inputs with {tc.circuit.n_inputs} numbers.")
    text = to_qasm(tc.circuit, tc.weights, values if tc.circuit.n_inputs else None, version=qasm)
    if out is None:
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        atomic_write_text(out, text)
        print(f"OpenQASM {qasm}.0 written to {out}")
