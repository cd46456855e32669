"""``lepton data pack|unpack|inspect|verify|reduce``: the packed data store from the command line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from lepton.cli.app import app
from lepton.cli.checks import input_file, make_config, output_file
from lepton.cli.options import Channels, Format, FormatOpt, ImageSize, Layout, out_option
from lepton.cli.output import console, print_json, print_table

data_app = typer.Typer(
    no_args_is_help=True,
    help="Pack datasets into a compact, checksummed store (.lds) that training reads directly.\n\n"
    "Examples:\n\n  lepton data pack mnist -o mnist.lds\n\n  lepton data inspect mnist.lds --xz\n\n"
    "  lepton data verify s3://bucket/mnist.lds\n\n  lepton data unpack mnist.lds -o mnist.npz\n\n"
    "  lepton data reduce mnist.lds --pca-variance 0.95 -o mnist-pca.lds",
)
app.add_typer(data_app, name="data")


_COLUMNS = (
    "split",
    "field",
    "codec",
    "raw_bytes",
    "stored_bytes",
    "bits_per_value",
    "ratio_vs_raw",
    "ratio_vs_xz",
    "model",
)


def _store_location(store: str) -> str:
    """A URL as given; a local path only if it is a regular file (a folder or a FIFO is one clear line)."""
    from lepton.data.store.remote import is_url

    return store if is_url(store) else str(input_file(store, "STORE"))


def _brief(rows: list[dict]) -> list[dict]:
    """The columns that fit a terminal; ``--format json`` has them all."""
    return [{c: r.get(c, "") for c in _COLUMNS if any(c in x for x in rows)} for r in rows]


@contextmanager
def _pack_bar(what: str, n_train: int, n_test: int) -> Iterator[dict[str, Any]]:
    """A bar on stderr (stdout may carry ``--format json``) over the samples packed, with the fit of a learned
    codec as its own task; yields the ``progress`` and ``fit_progress`` arguments of the pack functions."""
    from lepton.utils.progress import fit_task, progress_bar

    offset = {"train": 0, "test": n_train}
    with progress_bar() as bar:
        task = bar.add_task(what, total=n_train + n_test, status="")
        yield {
            "progress": lambda split, done: bar.update(task, completed=offset[split] + done, status=split),
            "fit_progress": fit_task(bar, "fit the codec of"),
        }


@data_app.command("pack")
def pack(
    source: Annotated[
        str,
        typer.Argument(help="mnist, fashion-mnist, digits, NAME:PATH, a .npz, an image folder, CIFAR .bin or IDX dir"),
    ],
    out: Annotated[Path, out_option("the store to write (.lds)")] = Path("data.lds"),
    codec: Annotated[str, typer.Option(help="image codec: auto, lepton-cm, freq, lzma, zstd or deflate")] = "auto",
    label_codec: Annotated[
        str, typer.Option(help="label codec: general (the smallest of freq, lzma, zstd, deflate), or a name")
    ] = "general",
    block_samples: Annotated[
        int | None,
        typer.Option(
            help="samples per independently decodable block; default 1,000, fewer for large images so a block "
            "holds at most 8 MiB of pixels (an image folder's pack then stays within a few hundred MB)",
            min=1,
        ),
    ] = None,
    image_size: ImageSize = None,
    channels: Channels = None,
    layout: Layout = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Pack SOURCE losslessly into OUT, then verify every block against the source. An image folder is packed
    streaming (a few blocks in memory at a time, whatever the folder's size) and verified by decoding it again.

    Examples:
      lepton data pack mnist -o mnist.lds
      lepton data pack ./pets --image-size 64 --channels rgb --codec zstd -o pets.lds   # streamed
    """
    from lepton.data.folder import plan_image_folder
    from lepton.data.options import SourceOptions
    from lepton.data.sources import image_folder_of, load_dataset
    from lepton.data.store import (
        bits_per_pixel,
        default_block_samples,
        inspect_store,
        open_store,
        pack_dataset,
        pack_image_folder,
        verify_store,
    )
    from lepton.errors import ConfigError, FormatError

    if out.suffix != ".lds":
        raise ConfigError(f"--out {out}: a packed store must end in .lds (e.g. -o data.lds).")
    output_file(out, "--out")
    given = {"image_size": image_size, "channels": channels, "layout": layout}
    options = make_config(SourceOptions, {}, **{k: v for k, v in given.items() if v is not None})
    folder = image_folder_of(source)
    codecs = {"image_codec": codec, "label_codec": label_codec, "block_samples": block_samples}
    if folder is not None:  # streamed: decoded and encoded block by block, never held whole
        plan = plan_image_folder(folder, options)
        with _pack_bar(f"pack {folder.name} (streaming)", len(plan.train), len(plan.test)) as progress:
            pack_image_folder(plan, out, **codecs, **progress)
        report = verify_store(out, reference=plan)
    else:
        data = load_dataset(source, options)
        if block_samples is None:
            codecs["block_samples"] = default_block_samples(data.x_train[:1].nbytes)
        with _pack_bar(f"pack {data.name}", len(data.x_train), len(data.x_test)) as progress:
            pack_dataset(data, out, **codecs, **progress)
        report = verify_store(out, reference=data)
    if not report.ok:
        raise FormatError(f"{out}: verification after packing failed: {report.errors[0]}")
    store = open_store(out)
    rows = inspect_store(store)
    if fmt is Format.json:
        print_json({"file": str(out), "bytes": store.file_bytes, "bits_per_pixel": bits_per_pixel(store), "rows": rows})
        return
    print_table(_brief(rows), f"{out}")
    console.print(f"wrote {out}: {store.file_bytes:,} bytes, {bits_per_pixel(store):.3f} bits/pixel, verified")


@data_app.command("unpack")
def unpack(
    store: Annotated[str, typer.Argument(help="a store: path or URL (s3://…, file://…)")],
    out: Annotated[Path, out_option("the .npz to write (x_train, y_train, x_test, y_test)")] = Path("data.npz"),
) -> None:
    """Decode STORE into an .npz that `lepton data pack` and every Lepton command accept."""
    import numpy as np

    from lepton.data.store import load_packed
    from lepton.errors import ConfigError
    from lepton.utils.io import atomic_path

    if out.suffix != ".npz":
        raise ConfigError(f"--out {out}: unpack writes an .npz file (e.g. -o data.npz).")
    output_file(out, "--out")
    data = load_packed(_store_location(store))
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
    console.print(f"wrote {out}: {len(data.x_train):,} train + {len(data.x_test):,} test samples")


@data_app.command("inspect")
def inspect(
    store: Annotated[str, typer.Argument(help="a store: path or URL")],
    xz: Annotated[
        bool, typer.Option("--xz/--no-xz", help="also compress each field with xz -9e to compare (slow on big fields)")
    ] = True,
    fmt: FormatOpt = Format.table,
) -> None:
    """Fields, codecs, sizes, bits per value (= bits per pixel for images), ratio against raw and against xz."""
    from lepton.data.store import bits_per_pixel, inspect_store, open_store

    s = open_store(_store_location(store))
    rows = inspect_store(s, xz=xz)
    if fmt is Format.json:
        print_json(
            {"file": store, "bytes": s.file_bytes, "bits_per_pixel": bits_per_pixel(s), "attrs": s.attrs, "rows": rows}
        )
        return
    print_table(
        _brief(rows), f"{store} ({s.file_bytes:,} bytes, format v{s.version}, {bits_per_pixel(s):.3f} bits/pixel)"
    )


@data_app.command("verify")
def verify(
    store: Annotated[str, typer.Argument(help="a store: path or URL")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Check the index, every block's CRC-32 and that every block decodes to its recorded dtype and shape."""
    from lepton.data.store import verify_store
    from lepton.errors import FormatError

    report = verify_store(_store_location(store))
    if fmt is Format.json:
        print_json(report.model_dump())
    elif not report.ok:  # every bad block, one line each on stdout; the error below stays one line
        for problem in report.errors:
            print(f"bad: {problem}")
    if not report.ok:
        listed = "listed above" if fmt is Format.table else "listed in the JSON report"
        raise FormatError(f"{store}: {len(report.errors)} bad block(s) ({listed}); first: {report.errors[0]}")
    if fmt is Format.table:
        console.print(
            f"{store}: OK — {report.blocks} blocks, {report.arrays} arrays, {report.samples}, "
            f"{report.decoded_bytes:,} bytes decoded in {report.seconds:.2f} s"
        )


@data_app.command("reduce")
def reduce(
    source: Annotated[str, typer.Argument(help="a store, or a dataset as `lepton data pack` accepts")],
    out: Annotated[Path, out_option("the reduced store to write (.lds)")] = Path("reduced.lds"),
    pca_variance: Annotated[
        float | None, typer.Option(help="PCA keeping this fraction of variance (0-1); int8 coefficients")
    ] = None,
    bits: Annotated[int | None, typer.Option(help="bit-depth reduction: keep this many bits per pixel (1-7)")] = None,
    select_variance: Annotated[
        float | None, typer.Option(help="feature selection: drop pixels with variance below this (0-255² scale)")
    ] = None,
    select_mi: Annotated[
        int | None,
        typer.Option(help="feature selection: keep the K pixels with the highest mutual information with the label"),
    ] = None,
    model: Annotated[
        str, typer.Option(help="model of the accuracy check (lenet-300-100 for digits' 8x8 images)")
    ] = "lenet5",
    train_samples: Annotated[int, typer.Option(help="training images for the accuracy check (short run)")] = 10000,
    epochs: Annotated[int, typer.Option(help="epochs of the short LeNet-5 accuracy check")] = 1,
    fmt: FormatOpt = Format.table,
) -> None:
    """Lossy reduction (opt-in): write a smaller store and report bytes, ratio and LeNet-5 accuracy on the
    reconstructed images against the original (a short training run: --epochs on --train-samples images)."""
    from lepton.data.reduce import ReduceConfig, reduce_dataset
    from lepton.data.sources import load_dataset
    from lepton.data.store import load_packed
    from lepton.data.store.remote import is_url
    from lepton.errors import ConfigError
    from lepton.train.job import accuracy_check

    methods = sum(v is not None for v in (pca_variance, bits, select_variance, select_mi))
    if methods != 1:
        raise ConfigError(
            "choose exactly one of --pca-variance, --bits, --select-variance, --select-mi "
            f"(got {methods}); e.g. `lepton data reduce mnist --pca-variance 0.95 -o pca.lds`."
        )
    if out.suffix != ".lds":
        raise ConfigError(f"--out {out}: a packed store must end in .lds.")
    output_file(out, "--out")
    cfg = make_config(
        ReduceConfig,
        {},
        pca_variance=pca_variance,
        bits=bits,
        select_variance=select_variance,
        select_mi=select_mi,
        train_samples=train_samples,
        epochs=epochs,
        model=model,
    )
    is_store = is_url(source) or source.endswith(".lds")
    data = load_packed(_store_location(source)) if is_store else load_dataset(source)
    with console.status("reducing, packing and training the accuracy check"):
        report = reduce_dataset(data, out, cfg, accuracy=accuracy_check(cfg.model, epochs=cfg.epochs, seed=cfg.seed))
    if fmt is Format.json:
        print_json(report.model_dump())
        return
    print_table([r.model_dump() for r in report.rows], f"{data.name}: lossy reduction ({report.note})")
    console.print(f"wrote {out}")
