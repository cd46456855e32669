"""``lepton edge export|bench|split``: ONNX export + int8, latency benchmark, edge–cloud split planner."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from lepton.cli.app import app
from lepton.cli.checks import arch_spec, input_file, make_config, output_file
from lepton.cli.options import (
    Arch,
    Format,
    FormatOpt,
    InputShape,
    NormalizeMean,
    NormalizeStd,
    NumClasses,
    TrustCode,
    out_option,
)
from lepton.cli.output import console, print_json, print_table

edge_app = typer.Typer(
    no_args_is_help=True,
    help="Take a model to the edge: ONNX export and int8, latency benchmark, edge–cloud split.\n\n"
    "Examples:\n\n  lepton edge export runs/demo/model.safetensors -o model.onnx --int8 model.int8.onnx\n\n"
    "  lepton edge bench model.int8.onnx --torch runs/demo/model.safetensors\n\n"
    "  lepton edge split runs/demo/model.safetensors --bandwidth 10Mbit --rtt 20ms --edge-slowdown 8\n\n"
    "  lepton edge export weights.pt --arch resnet20 --data digits --input-shape 1,8,8 -o resnet20.onnx",
)
app.add_typer(edge_app, name="edge")

ModelArg = Annotated[
    Path,
    typer.Argument(help="a checkpoint (.safetensors + .json sidecar), a .lep file, or a plain weight file with --arch"),
]
DataOpt = Annotated[str | None, typer.Option(help="dataset [default: the one the model was trained on]")]


def _load(model: Path, data: str | None, trust_code: bool, option: str = "MODEL", arch=None):  # type: ignore[no-untyped-def]
    from lepton.artifacts import load_model_file, trained_dataset, trained_source_options
    from lepton.data.sources import load_dataset
    from lepton.errors import DataError

    loaded = load_model_file(input_file(model, option), trust_code=trust_code, arch=arch)
    dataset = load_dataset(
        data or trained_dataset(loaded.meta, model) or "mnist", trained_source_options(loaded.meta, model)
    )
    if tuple(dataset.input_shape) != tuple(loaded.spec.input_shape):
        raise DataError(
            f"dataset {dataset.name} has inputs {list(dataset.input_shape)} but {model} expects "
            f"{list(loaded.spec.input_shape)}; pass --data with the dataset it was trained on"
            + (" and --input-shape with that dataset's C,H,W." if loaded.kind == "weights" else ".")
        )
    return loaded, dataset


@edge_app.command("export")
def export_cmd(
    model: ModelArg,
    out: Annotated[Path, out_option("the fp32 .onnx file to write")] = Path("model.onnx"),
    int8: Annotated[Path | None, typer.Option("--int8", help="also write an int8 (QDQ) .onnx file here")] = None,
    calibration: Annotated[int, typer.Option(help="training images used to calibrate int8")] = 1024,
    opset: Annotated[int, typer.Option(help="ONNX opset")] = 17,
    data: DataOpt = None,
    fmt: FormatOpt = Format.table,
    trust_code: TrustCode = False,
    arch: Arch = None,
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    normalize_mean: NormalizeMean = None,
    normalize_std: NormalizeStd = None,
) -> None:
    """Export MODEL to ONNX (dynamic batch), check it against torch on the test set, optionally quantize to int8.

    With --int8, layers whose int8 kernel is slower than fp32 on this machine stay fp32 when that makes the
    model faster, then both files are timed here and the one to deploy is named: int8 when it is not slower
    beyond noise and loses at most 0.5 pp of test accuracy."""
    from lepton.edge.deploy import export_model

    output_file(out, "--out")
    if int8 is not None:
        output_file(int8, "--int8")
    loaded, dataset = _load(
        model, data, trust_code, arch=arch_spec(arch, input_shape, num_classes, normalize_mean, normalize_std)
    )
    result = export_model(loaded.model, loaded.spec, dataset, out, int8, opset=opset, calibration_images=calibration)
    rows = [f.model_dump() for f in result.files]
    if fmt is Format.json:
        print_json({"files": rows, "choice": _dump(result.choice), "int8_tuning": _dump(result.int8_tuning)})
        return
    print_table(rows, f"ONNX export of {model} (accuracy on {len(dataset.tensors('test')[1])} test images)")
    tuning, choice = result.int8_tuning, result.choice
    if tuning is not None and tuning.mixed_p50_ms is not None:
        console.print(
            f"int8 kernels slower than fp32 here: {', '.join(tuning.candidates)}; keeping them fp32 gave "
            f"{tuning.mixed_p50_ms:.4f} ms p50 against {tuning.full_int8_p50_ms:.4f} ms all-int8 -> {tuning.kept}"
        )
    if choice is not None:
        console.print(
            f"p50 batch 1, 1 thread: fp32 {choice.fp32_p50_ms:.4f} ms, int8 {choice.int8_p50_ms:.4f} ms "
            f"(faster: {choice.faster}). Deploy {int8 if choice.deploy == 'int8' else out}: {choice.reason}."
        )


def _dump(report: BaseModel | None) -> dict | None:  # type: ignore[type-arg]
    return None if report is None else report.model_dump()


@edge_app.command("bench")
def bench_cmd(
    onnx_file: Annotated[Path, typer.Argument(help="an .onnx file")],
    torch_model: Annotated[
        Path | None, typer.Option("--torch", help="also time this model in PyTorch eager fp32")
    ] = None,
    threads: Annotated[int, typer.Option(help="intra-op threads (1 = one small edge core)")] = 1,
    iterations: Annotated[int, typer.Option(help="timed batch-1 calls")] = 1000,
    batch: Annotated[int, typer.Option(help="batch size for throughput")] = 256,
    data: DataOpt = None,
    fmt: FormatOpt = Format.table,
    trust_code: TrustCode = False,
    arch: Arch = None,
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    normalize_mean: NormalizeMean = None,
    normalize_std: NormalizeStd = None,
) -> None:
    """Latency p50/p90/p99 at batch 1 and throughput at BATCH, on real test images.

    ONNX_FILE is any ONNX model with one image input [N, C, H, W] (exported by Lepton or not); pass --data
    with a dataset of its input shape.

    Examples:
      lepton edge bench model.int8.onnx --torch runs/demo/model.safetensors
      lepton edge bench resnet.onnx --data digits --torch weights.pt --arch resnet20 --input-shape 1,8,8
    """
    from lepton.data.sources import load_dataset
    from lepton.edge.bench import BenchConfig
    from lepton.edge.deploy import bench_models
    from lepton.errors import ConfigError

    cfg = make_config(
        BenchConfig, {"throughput_batch": "--batch"}, threads=threads, iterations=iterations, throughput_batch=batch
    )
    loaded = None
    spec = arch_spec(arch, input_shape, num_classes, normalize_mean, normalize_std)
    if torch_model is not None:
        loaded, dataset = _load(torch_model, data, trust_code, "--torch", spec)
    elif spec is not None:
        raise ConfigError("--arch describes the weight file given with --torch; pass --torch FILE with it.")
    else:
        dataset = load_dataset(data or "mnist")
    input_file(onnx_file, "ONNX_FILE")
    images = dataset.tensors("test")[0][:batch].numpy()
    reports = bench_models(images, cfg, [(onnx_file, None)], torch_model=loaded.model if loaded else None)
    if fmt is Format.json:
        print_json([r.model_dump() for r in reports])
        return
    print_table([r.model_dump() for r in reports], f"latency (batch 1, {threads} thread(s)) and throughput")


@edge_app.command("split")
def split_cmd(
    model: ModelArg,
    bandwidth: Annotated[str, typer.Option(help="link rate, e.g. 10Mbit, 500kbit, 2MB")] = "10Mbit",
    rtt: Annotated[str, typer.Option(help="round-trip time, e.g. 20ms")] = "20ms",
    edge_slowdown: Annotated[float, typer.Option(help="how many times slower the edge is than this host")] = 8.0,
    cloud_speedup: Annotated[float, typer.Option(help="how many times faster the cloud is than this host")] = 1.0,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="tensor on the wire: fp32, int8 or int8+zstd", show_default="int8+zstd, the run config's edge.encoding"
        ),
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="write the split chart here (.png or .svg)")] = Path("split.png"),
    run: Annotated[bool, typer.Option("--run/--no-run", help="run the best split for real over loopback HTTP")] = True,
    requests: Annotated[int, typer.Option(help="images sent in the real run")] = 100,
    data: DataOpt = None,
    fmt: FormatOpt = Format.table,
    trust_code: TrustCode = False,
    arch: Arch = None,
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    normalize_mean: NormalizeMean = None,
    normalize_std: NormalizeStd = None,
) -> None:
    """Predict the latency of every cut (Neurosurgeon), print the best, then run it across two processes."""
    from pydantic import ValidationError

    from lepton.edge.config import EdgeConfig
    from lepton.edge.deploy import PROFILE_IMAGES, split_model
    from lepton.edge.split import NetworkProfile, parse_bandwidth, parse_duration_ms
    from lepton.errors import ConfigError
    from lepton.report.edge_plots import plot_plan
    from lepton.train.checkpoint import save_checkpoint

    if encoding is None:  # one default for `lepton edge split` and `lepton run`: the run config's
        encoding = EdgeConfig.model_fields["encoding"].default
    if encoding not in ("fp32", "int8", "int8+zstd"):
        raise ConfigError(f"--encoding {encoding!r} must be one of fp32, int8, int8+zstd.")
    try:
        net = NetworkProfile(
            bandwidth_bps=parse_bandwidth(bandwidth),
            rtt_ms=parse_duration_ms(rtt),
            edge_slowdown=edge_slowdown,
            cloud_speedup=cloud_speedup,
            encoding=encoding,
        )  # type: ignore[arg-type]
    except ValidationError as e:
        raise ConfigError(f"--edge-slowdown and --cloud-speedup must be > 0 ({e.errors()[0]['msg']}).") from e
    if requests < 1:
        raise ConfigError(f"--requests {requests}: must be at least 1 (e.g. --requests 100).")
    if plot is not None:
        output_file(plot, "--plot")
    loaded, dataset = _load(
        model, data, trust_code, arch=arch_spec(arch, input_shape, num_classes, normalize_mean, normalize_std)
    )
    images = dataset.tensors("test")[0][: max(requests, PROFILE_IMAGES)].numpy()
    with tempfile.TemporaryDirectory(prefix="lepton-split-") as tmp:
        source = model
        if loaded.kind == "weights":  # the tail process reads a Lepton checkpoint, which carries the architecture
            source = save_checkpoint(Path(tmp) / "model", loaded.model, loaded.spec)
        result = split_model(loaded.model, source, images, net, requests=requests, run=run, trust_code=trust_code)
    plan, measured = result.plan, result.measured
    if plot is not None:
        plot_plan(plan, str(plot))
    if fmt is Format.json:
        print_json(result.model_dump())
        return
    print_table([r.model_dump() for r in plan.rows], "predicted latency per cut (ms)")
    console.print(
        f"best cut: after {plan.best_after} (cut {plan.best_cut}) — predicted {plan.best_ms:.3f} ms; "
        f"cloud-only {plan.cloud_only_ms:.3f} ms, edge-only {plan.edge_only_ms:.3f} ms "
        f"({plan.speedup_vs_cloud_only:.2f}x vs cloud-only)"
    )
    if measured is not None:
        console.print(
            f"real run over 127.0.0.1 ({measured.requests} requests, median): measured "
            f"{measured.total_ms:.3f} ms (edge {measured.edge_ms:.3f}, transfer {measured.transfer_ms:.3f}, "
            f"cloud {measured.cloud_ms:.3f}) beside predicted {result.predicted_loopback_ms:.3f} ms "
            f"for this host with a free link; predictions agree with the whole model on "
            f"{measured.agreement:.1%} of images"
        )
    if plot is not None:
        console.print(f"chart: {plot}")
