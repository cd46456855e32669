"""``lepton train`` and ``lepton eval``: train a model with the shared loop; evaluate a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lepton.cli.app import app
from lepton.cli.checks import arch_spec, input_file
from lepton.cli.options import (
    AmpOpt,
    Arch,
    Channels,
    Device,
    Format,
    FormatOpt,
    ImageSize,
    InputShape,
    Layout,
    NormalizeMean,
    NormalizeStd,
    NumClasses,
    Overrides,
    Quiet,
    TrustCode,
    config_option,
    out_option,
)
from lepton.cli.output import console, print_json, print_table


@app.command()
def train(
    data: Annotated[
        str | None,
        typer.Option(
            help="dataset name, NAME:PATH, .npz, packed store (.lds, read as it trains), image folder, "
            "CIFAR .bin folder or IDX dir [default: mnist]"
        ),
    ] = None,
    image_size: ImageSize = None,
    channels: Channels = None,
    layout: Layout = None,
    normalize: Annotated[
        str | None,
        typer.Option(
            help="input normalization stored with the model: auto (per-channel mean/std of the training split; "
            "for RGB image folders, CIFAR) or none [default: none]",
            show_default=False,
            rich_help_panel="Reading the data",
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="registry name or package.module:factory [default: lenet5]")] = None,
    config: Annotated[Path | None, config_option("run YAML; its data/model/train sections apply")] = None,
    epochs: Annotated[int | None, typer.Option(help="override train.epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="override train.batch_size")] = None,
    lr: Annotated[float | None, typer.Option(help="override train.lr")] = None,
    seed: Annotated[int | None, typer.Option(help="override train.seed")] = None,
    threads: Annotated[int | None, typer.Option(help="override train.threads")] = None,
    device: Device = None,
    amp: AmpOpt = None,
    augment: Annotated[
        str | None,
        typer.Option(
            help="seeded augmentation of training batches: cropN (pad N pixels, crop at random), hflip (mirror "
            "half; not for digits or letters), reflect (pad by reflection), off; comma-separated, e.g. crop4,hflip "
            "(train.augment)"
        ),
    ] = None,
    train_subset: Annotated[int | None, typer.Option(help="train on the first N samples only")] = None,
    set_: Overrides = None,
    out: Annotated[Path, out_option("output folder")] = Path("runs/train"),
    resume: Annotated[bool, typer.Option(help="continue from OUT/last.safetensors if present")] = False,
    nproc: Annotated[
        int | None,
        typer.Option(help="worker processes on this machine, via torchrun", rich_help_panel="Distributed"),
    ] = None,
    nnodes: Annotated[
        int | None, typer.Option(help="machines taking part (needs --rdzv-endpoint)", rich_help_panel="Distributed")
    ] = None,
    node_rank: Annotated[
        int | None, typer.Option(help="this machine's rank (fixed-rank rendezvous)", rich_help_panel="Distributed")
    ] = None,
    rdzv_endpoint: Annotated[
        str | None, typer.Option(help="HOST:PORT of the rendezvous", rich_help_panel="Distributed")
    ] = None,
    max_restarts: Annotated[
        int | None, typer.Option(help="restarts of the worker group after a failure", rich_help_panel="Distributed")
    ] = None,
    comm_hook: Annotated[
        str | None, typer.Option(help="gradient compression: none, fp16 or powersgd", rich_help_panel="Distributed")
    ] = None,
    powersgd_rank: Annotated[
        int | None, typer.Option(help="PowerSGD approximation rank", rich_help_panel="Distributed")
    ] = None,
    powersgd_warmup: Annotated[
        int | None, typer.Option(help="PowerSGD: plain all-reduce steps first", rich_help_panel="Distributed")
    ] = None,
    error_feedback: Annotated[
        bool | None,
        typer.Option(
            "--error-feedback/--no-error-feedback", help="PowerSGD error feedback", rich_help_panel="Distributed"
        ),
    ] = None,
    quiet: Quiet = False,
    fmt: FormatOpt = Format.table,
    trust_code: TrustCode = False,
) -> None:
    """Train a model; write OUT/model.safetensors + OUT/model.json (and OUT/last.* after each epoch).

    Examples:
      lepton train                                  # LeNet-5 on MNIST, the default recipe
      lepton train --data digits --model lenet-300-100 --epochs 5 -o runs/digits
      lepton train --data ./pets --image-size 32 --channels rgb -o runs/pets   # ROOT/<class>/*.png|jpg
      lepton train --data cifar10:./cifar-10-batches-bin --model resnet20 --normalize auto -o runs/cifar
      lepton train --data cifar.npz --layout nhwc -o runs/npz                   # channels-last arrays
      lepton train --data mnist.lds -o runs/store       # batches read from the packed store's blocks
      lepton train --set train.checkpoint_every_steps=200 --resume -o runs/long   # resume mid-epoch
      lepton train -c my_run.yaml --resume -o runs/mine
      lepton train --model resnet20 --data cifar10:./cifar-10-batches-bin --device cuda --amp bf16
      lepton train --model resnet20 --data cifar10:./cifar-10-batches-bin --augment crop4,hflip -o runs/aug
      lepton train --nproc 2 --comm-hook powersgd --powersgd-rank 2 -o runs/ddp   # 2 workers via torchrun
      torchrun --standalone --nproc-per-node 2 -m lepton.train -o runs/ddp       # launched your own way
    """
    from lepton.config import parse_overrides
    from lepton.data.sources import load_training_data
    from lepton.distributed.runtime import env_rank
    from lepton.pipeline.config import load_run_config
    from lepton.train.amp import training_device
    from lepton.train.augment import parse_augment
    from lepton.train.checkpoint import save_checkpoint
    from lepton.train.job import train_model

    over: dict[str, Any] = parse_overrides(set_ or [])
    for section, key, value in (
        ("data", "dataset", data),
        ("model", "name", model),
        ("train", "epochs", epochs),
        ("train", "batch_size", batch_size),
        ("train", "lr", lr),
        ("train", "seed", seed),
        ("train", "threads", threads),
        ("train", "device", device),
        ("train", "amp", amp),
        ("data", "train_subset", train_subset),
        ("data", "image_size", image_size),
        ("data", "channels", channels),
        ("data", "layout", layout),
        ("data", "normalize", normalize),
    ):
        if value is not None:
            over.setdefault(section, {})[key] = value
    if augment is not None:
        over.setdefault("train", {}).setdefault("augment", {}).update(parse_augment(augment))
    for key, value in (
        ("nproc", nproc),
        ("nnodes", nnodes),
        ("node_rank", node_rank),
        ("rdzv_endpoint", rdzv_endpoint),
        ("max_restarts", max_restarts),
    ):
        if value is not None:
            over.setdefault("train", {}).setdefault("distributed", {})[key] = value
    for key, value in (
        ("kind", comm_hook),
        ("rank", powersgd_rank),
        ("warmup_steps", powersgd_warmup),
        ("error_feedback", error_feedback),
    ):
        if value is not None:
            over.setdefault("train", {}).setdefault("distributed", {}).setdefault("comm_hook", {})[key] = value
    cfg = load_run_config(config, overrides=over)
    training_device(cfg.train.device, cfg.train.amp)  # a device this machine lacks fails before the data loads
    dataset = load_training_data(cfg.data.dataset, cfg.data).subset(cfg.data.train_subset, cfg.data.test_subset)
    job = train_model(
        dataset,
        cfg.model.name,
        cfg.train,
        model_kwargs=cfg.model.kwargs,
        checkpoint_dir=out,
        resume=resume,
        progress=not quiet,
        trust_code=trust_code,
        normalize=cfg.data.normalize,
    )
    if env_rank() != 0:  # a torchrun worker other than rank 0: rank 0 saves and reports
        return
    path = save_checkpoint(
        out / "model",
        job.model,
        job.spec,
        extra={"dataset": dataset.summary(), "test_accuracy": job.test.accuracy, "config": cfg.model_dump(mode="json")},
    )
    result = {
        "checkpoint": str(path),
        "test_accuracy": job.test.accuracy,
        "test_loss": job.test.loss,
        "train_seconds": job.train.train_seconds,
        "images_per_second": job.train.images_per_second,
    }
    if fmt is Format.json:
        print_json(result)
    else:
        console.print(
            f"test accuracy {100 * job.test.accuracy:.2f}% · {job.train.train_seconds:.0f} s · "
            f"{job.train.images_per_second:,.0f} img/s · saved {path}"
        )


def evaluate_file(
    path: Path, data: str | None, *, trust_code: bool = False, arch: Any = None, device: str = "auto"
) -> dict[str, Any]:
    """Accuracy of a checkpoint, `.lep` file or (with ``arch``, a ModelSpec) plain weight file on the test split of
    ``data`` (default: its training dataset, or mnist), computed on ``device`` (auto, cpu, cuda, cuda:N, mps)."""
    from lepton.artifacts import load_model_file, trained_dataset, trained_source_options
    from lepton.data.sources import load_dataset
    from lepton.errors import DataError
    from lepton.models.registry import count_params
    from lepton.train.evaluate import evaluate
    from lepton.utils.device import resolve_device

    where = resolve_device(device)
    loaded = load_model_file(input_file(path, "MODEL_FILE"), trust_code=trust_code, arch=arch)
    dataset = load_dataset(
        data or trained_dataset(loaded.meta, path) or "mnist", trained_source_options(loaded.meta, path)
    )
    if tuple(dataset.input_shape) != loaded.spec.input_shape:
        raise DataError(
            f"dataset {dataset.name} has inputs {list(dataset.input_shape)} but the model expects "
            f"{list(loaded.spec.input_shape)}; pass --data with the dataset it was trained on"
            + (" and --input-shape with that dataset's C,H,W." if loaded.kind == "weights" else ".")
        )
    ev = evaluate(loaded.model.to(where), *dataset.tensors("test"), num_classes=dataset.num_classes)
    return {
        "file": str(path),
        "kind": loaded.kind,
        "model": loaded.spec.name,
        "params": count_params(loaded.model),
        "file_bytes": path.stat().st_size,
        "dataset": dataset.name,
        **ev.model_dump(exclude={"confusion"}),
        "classes": list(dataset.classes),
    }


@app.command(name="eval")
def eval_(
    model_file: Annotated[
        Path,
        typer.Argument(
            help="a .safetensors checkpoint (with its .json sidecar), a .lep file, or a plain weight file with --arch"
        ),
    ],
    data: Annotated[str | None, typer.Option(help="dataset to test on [default: the one it was trained on]")] = None,
    fmt: FormatOpt = Format.table,
    trust_code: TrustCode = False,
    arch: Arch = None,
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    normalize_mean: NormalizeMean = None,
    normalize_std: NormalizeStd = None,
    device: Device = None,
) -> None:
    """Evaluate a model on the test split: accuracy, loss, per-class accuracy.

    Examples:
      lepton eval runs/train/model.safetensors
      lepton eval runs/demo/model.lep
      lepton eval runs/train/model.safetensors --data mnist:/data/mnist --format json
      lepton eval runs/train/model.safetensors --device cuda:1
      lepton eval weights.pt --arch resnet20 --data digits --input-shape 1,8,8   # torch.save(model.state_dict())
    """
    result = evaluate_file(
        model_file,
        data,
        trust_code=trust_code,
        arch=arch_spec(arch, input_shape, num_classes, normalize_mean, normalize_std),
        device=device or "auto",
    )
    if fmt is Format.json:
        print_json(result)
        return
    console.print(
        f"{result['model']} ({result['params']:,} params, {result['kind']} of {result['file_bytes']:,} bytes) "
        f"on {result['dataset']} test "
        f"({result['samples']:,} images): accuracy {100 * result['accuracy']:.2f}%, loss {result['loss']:.4f}"
    )
    print_table(
        [{"class": c, "accuracy": a} for c, a in zip(result["classes"], result["per_class_accuracy"])],
        "Per-class accuracy",
    )
