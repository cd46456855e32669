"""The data stage: pack the training data losslessly, verify it, measure codecs and reading from the store.

Runs first. After verification the run's dataset is replaced by the arrays read back from the store, so
the stages after it train on data that went through the packed format.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel

from lepton.data.codecs import Codec, fit_codec, get_codec, measure_codec
from lepton.data.dataset import ImageDataset
from lepton.data.reduce import ReduceConfig, ReduceRow, reduce_dataset
from lepton.data.store import (
    Store,
    bits_per_pixel,
    load_packed,
    open_store,
    pack_dataset,
    store_batches,
    verify_store,
)
from lepton.data.store.format import resolve_codec
from lepton.errors import FormatError
from lepton.models.registry import ModelSpec
from lepton.pipeline.config import RunConfig
from lepton.pipeline.state import RunState
from lepton.report import html as H
from lepton.report.data_plots import codec_sizes, lossy_curve
from lepton.train import TensorBatches
from lepton.train.job import accuracy_check
from lepton.train.throughput import training_throughput
from lepton.utils.progress import fit_task, progress_bar


class CodecStats(BaseModel):
    bytes: int
    bits_per_pixel: float
    encode_mb_s: float
    decode_mb_s: float


class LoaderStats(BaseModel):
    batches: int
    batch_size: int
    workers: int
    in_memory_images_per_second: float
    store_images_per_second: float
    ratio: float


class DataStageReport(BaseModel):
    store_file: str
    store_bytes: int
    raw_bytes: int
    ratio: float
    bits_per_pixel: float
    image_codec: str
    label_codec: str
    verified: bool
    pack_seconds: float
    verify_seconds: float
    fit_pixels: int | None = None
    compare_images: int
    compare_blocks: int = 0
    seconds: dict[str, float] = {}
    codecs: dict[str, CodecStats]
    loader: LoaderStats
    lossy: list[ReduceRow] | None = None
    lossy_note: str | None = None


def codec_stats(
    name: str,
    images: np.ndarray,
    block_samples: int,
    fit_progress: Callable[[float, float], None] | None = None,
    *,
    fitted: Codec | None = None,
    fit_pixels: int | None = None,
) -> CodecStats | None:
    """Codec ``name`` on ``images`` in independent blocks (None if unavailable); one thread. A codec that
    learns a model is fitted to ``images`` first (not timed; ``fit_progress(done, total)`` meanwhile; its tree
    grown on ``fit_pixels`` pixels), unless ``fitted`` (the store's codec, fitted to the whole training split)
    is that codec; the model's bytes are counted either way."""
    try:
        codec = fitted if fitted is not None and fitted.name == name else None
        if codec is None:
            codec = fit_codec(
                with_fit_pixels(resolve_codec(name, images[:block_samples]), fit_pixels), images, progress=fit_progress
            )
    except ImportError:
        return None
    m = measure_codec(codec, images, block_samples=block_samples)
    return CodecStats(
        bytes=m.bytes, bits_per_pixel=m.bits_per_pixel, encode_mb_s=m.encode_mb_s, decode_mb_s=m.decode_mb_s
    )


def run_dataset(store: Store, store_file: str) -> ImageDataset:
    """The dataset ``store`` (the run folder's file ``store_file``) holds, its ``source`` that file's name.

    The name, not the store's absolute location: the source goes into what later stages write (the .lep header,
    the checkpoint's metadata), so a full path would make those files, and the sizes the run reports (the
    header is deflated, so even a path of the same length changes them), depend on where the run folder is.
    """
    return dataclasses.replace(load_packed(store), source=store_file)


def with_fit_pixels(codec: Codec, fit_pixels: int | None) -> Codec:
    """``codec`` growing its model on ``fit_pixels`` pixels if it learns one from a sample (``lepton-cm``'s
    ``fit_pixels``) and has no model yet; any other codec, or ``fit_pixels=None``, as it is."""
    if fit_pixels is None or getattr(codec, "model", b"") or not hasattr(codec, "fit_pixels"):
        return codec
    return dataclasses.replace(codec, fit_pixels=fit_pixels)  # type: ignore[type-var]


def image_codec(
    spec: str | Codec,
    x: np.ndarray,
    block_samples: int,
    fit_pixels: int | None,
    *,
    progress: Callable[[float, float], None] | None = None,
) -> tuple[Codec, dict[str, float]]:
    """The images' codec, chosen (``auto``: on the first block) and fitted to ``x``, and the seconds spent
    fitting and choosing. For ``auto`` on images, lepton-cm is fitted to ``x`` first and ``auto`` measures that
    model on the first block (it is what the store will hold) instead of fitting a throwaway one to the block."""
    t0 = time.perf_counter()
    first = x[:block_samples]
    learned = learned_candidate(spec, first)
    fitted = () if learned is None else (fit_codec(with_fit_pixels(learned, fit_pixels), x, progress=progress),)
    t1 = time.perf_counter()
    codec = with_fit_pixels(resolve_codec(spec, first, fitted=fitted), fit_pixels)
    t2 = time.perf_counter()
    codec = fit_codec(codec, x, progress=progress)  # a named codec, or one auto chose other than lepton-cm
    t3 = time.perf_counter()
    return codec, {"fit": round(t1 - t0 + t3 - t2, 2), "choose": round(t2 - t1, 2)}


def learned_candidate(spec: str | Codec, first: np.ndarray) -> Codec | None:
    """The learned codec (``lepton-cm``) that ``auto`` would try on ``first``, if ``spec`` is ``auto`` and it is
    available and supports the data; else None."""
    if spec != "auto":
        return None
    try:
        cm = get_codec("lepton-cm")
    except ImportError:  # its compiled kernels are missing: auto skips it too
        return None
    return cm if cm.supports(first.dtype, first.shape) else None


def sample_blocks(x: np.ndarray, block_samples: int, samples: int | None) -> tuple[np.ndarray, int]:
    """About ``samples`` samples of ``x`` as whole blocks of the store, evenly spaced over it (None: all of
    ``x``), and how many blocks that is."""
    n_blocks = -(-len(x) // block_samples)
    k = n_blocks if samples is None else max(1, min(n_blocks, -(-samples // block_samples)))
    picks = np.unique(np.linspace(0, n_blocks - 1, k).round().astype(np.int64))
    return np.concatenate([x[i * block_samples : (i + 1) * block_samples] for i in picks]), len(picks)


class DataStage:
    name = "data"
    title = "Data compression"
    report_type = DataStageReport

    def enabled(self, config: RunConfig) -> bool:
        return config.data.pack.enabled

    def run(self, state: RunState) -> DataStageReport:
        cfg, data = state.config.data.pack, state.require_dataset()
        path = state.run_dir / "data.lds"
        seconds: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            seconds[name] = round(now - clock, 2)
            clock = now

        named = get_codec(cfg.codec, **cfg.codec_params) if cfg.codec_params else cfg.codec
        fit_pixels = None if "fit_pixels" in cfg.codec_params else cfg.fit_pixels  # the user's own choice wins
        offset = {"train": 0, "test": len(data.x_train)}  # the bar counts the train split's samples, then the test's
        with progress_bar(state.console, enabled=state.progress) as bar:
            fitting = fit_task(bar, "fit the codec of") if state.progress else None  # quiet: no pilot tree
            codec, times = image_codec(
                named,
                data.x_train,
                cfg.block_samples,
                fit_pixels,
                progress=None if fitting is None else (lambda d, t: fitting("images", d, t)),
            )
            seconds.update(times)
            clock = time.perf_counter()
            task = bar.add_task(f"pack {path.name}", total=len(data.x_train) + len(data.x_test), status="")
            pack_dataset(
                data,
                path,
                image_codec=codec,
                block_samples=cfg.block_samples,
                progress=lambda split, done: bar.update(task, completed=offset[split] + done, status=split),
            )
        lap("pack")
        pack_seconds = seconds["choose"] + seconds["fit"] + seconds["pack"]
        check = verify_store(path, reference=data)
        if not check.ok:
            raise FormatError(f"{path}: the packed store does not verify: {check.errors[0]}")
        store = open_store(path)
        state.dataset = run_dataset(store, path.name)  # identical arrays (verified): later stages train on them
        state.artifacts["data_store"] = path
        state.console.print(
            f"packed {path.name}: {store.file_bytes:,} bytes, {bits_per_pixel(store):.3f} bits/pixel, "
            f"verified in {check.seconds:.1f} s"
        )
        lap("verify")

        sample, n_blocks = sample_blocks(data.x_train, cfg.block_samples, cfg.compare_samples)
        codecs = {}
        with progress_bar(state.console, enabled=state.progress) as bar:
            task = bar.add_task("fit and measure codecs", total=len(cfg.compare), status="")
            measured = {}
            for name in cfg.compare:
                bar.update(task, status=name)
                fitting = fit_task(bar, f"fit {name} to")
                measured[name] = codec_stats(
                    name,
                    sample,
                    cfg.block_samples,
                    fit_progress=(lambda done, total, f=fitting: f("images", done, total)) if state.progress else None,
                    fitted=codec,
                    fit_pixels=fit_pixels,
                )
                bar.advance(task)
        for name, stats in measured.items():
            if stats is not None:
                codecs[name] = stats
                state.console.print(
                    f"  {name}: {stats.bits_per_pixel:.3f} bits/pixel, encode {stats.encode_mb_s:.1f} "
                    f"MB/s, decode {stats.decode_mb_s:.1f} MB/s"
                )
        lap("compare")

        tcfg = state.config.train
        spec = ModelSpec(state.config.model.name, data.input_shape, data.num_classes, dict(state.config.model.kwargs))
        x, y = data.tensors("train")
        steps = min(cfg.loader_batches, len(x) // tcfg.batch_size)
        mem = training_throughput(
            spec, TensorBatches(x, y, tcfg.batch_size, seed=tcfg.seed), steps, tcfg, trust_code=state.trust_code
        )
        loader = store_batches(path, "train", tcfg.batch_size, seed=tcfg.seed, workers=cfg.workers)
        packed = training_throughput(spec, loader, steps, tcfg, trust_code=state.trust_code)
        lap("loader")
        info = store.split("train")
        raw = sum(s.samples * f.sample_bytes for s in store.splits.values() for f in s.fields.values())
        report = DataStageReport(
            store_file=path.name,
            store_bytes=store.file_bytes,
            raw_bytes=raw,
            ratio=raw / store.file_bytes,
            bits_per_pixel=bits_per_pixel(store),
            image_codec=info.fields["images"].codec.name,
            label_codec=info.fields["labels"].codec.name,
            verified=True,
            pack_seconds=pack_seconds,
            verify_seconds=check.seconds,
            fit_pixels=getattr(codec, "fit_pixels", None),
            compare_images=len(sample),
            compare_blocks=n_blocks,
            seconds=seconds,
            codecs=codecs,
            loader=LoaderStats(
                batches=steps,
                batch_size=tcfg.batch_size,
                workers=cfg.workers,
                in_memory_images_per_second=mem,
                store_images_per_second=packed,
                ratio=packed / mem,
            ),
        )
        if cfg.lossy.enabled:
            report.lossy, report.lossy_note = self._lossy(state)
        return report

    def outputs(self, report: DataStageReport) -> list[str]:  # type: ignore[override]
        return [report.store_file]

    def restore(self, state: RunState, report: DataStageReport) -> None:  # type: ignore[override]
        state.dataset = run_dataset(open_store(state.run_dir / report.store_file), report.store_file)
        state.artifacts["data_store"] = state.run_dir / report.store_file

    def summary(self, report: DataStageReport) -> str:  # type: ignore[override]
        return (
            f"{report.bits_per_pixel:.3f} bits/pixel, store {report.store_bytes:,} bytes "
            f"({report.ratio:.2f}x smaller than raw, {report.image_codec}), "
            + ("verified" if report.verified else "NOT verified")
        )

    def _lossy(self, state: RunState) -> tuple[list[ReduceRow], str]:
        lossy, data = state.config.data.pack.lossy, state.require_dataset()
        common = {
            "train_samples": lossy.train_samples,
            "epochs": lossy.epochs,
            "seed": state.config.train.seed,
            "model": state.config.model.name,
        }
        configs = [ReduceConfig(pca_variance=v, **common) for v in lossy.pca_variances]
        configs += [ReduceConfig(bits=b, **common) for b in lossy.bits]
        rows: list[ReduceRow] = []
        baseline, note = None, ""
        for i, rc in enumerate(configs):
            accuracy = accuracy_check(rc.model, epochs=rc.epochs, seed=rc.seed, trust_code=state.trust_code)
            rep = reduce_dataset(
                data, state.run_dir / "reduced" / f"reduced-{i}.lds", rc, accuracy=accuracy, baseline_accuracy=baseline
            )
            baseline, note = rep.rows[0].test_accuracy, rep.note
            rows += rep.rows[1:] if rows else rep.rows
            state.console.print(
                f"  lossy {rc.label}: {rep.store_bytes:,} bytes, accuracy {rep.rows[1].test_accuracy:.4f}"
            )
        return rows, note

    def html(self, report: DataStageReport, state: RunState) -> str:  # type: ignore[override]
        rows = [{"codec": k, **v.model_dump()} for k, v in report.codecs.items()]
        lo = report.loader
        parts = [
            H.kpis(
                {
                    "store": f"{report.store_bytes:,} B",
                    "bits / pixel": f"{report.bits_per_pixel:.3f}",
                    "ratio vs raw": f"{report.ratio:.2f}x",
                    "image codec": report.image_codec,
                    "verified": "yes" if report.verified else "NO",
                    "loader vs memory": f"{lo.ratio:.2f}x",
                }
            ),
            H.figure(
                codec_sizes(rows),
                f"each codec on {report.compare_images:,} training images ({report.compare_blocks} of the "
                "store's blocks, evenly spaced), one thread; lepton-cm with the store's model (fitted on the "
                "training split), its bytes counted",
            ),
            H.table(rows),
            f"<p>DataLoader over the store ({lo.workers} workers) fed {lo.batches} LeNet training steps at "
            f"{lo.store_images_per_second:,.0f} images/s against {lo.in_memory_images_per_second:,.0f} from "
            f"in-memory tensors. The train stage trains on the arrays read back from <code>{report.store_file}</code>.</p>",
        ]
        if report.lossy:
            parts += [
                "<h3>Lossy reduction: size against accuracy</h3>",
                H.figure(lossy_curve([r.model_dump() for r in report.lossy]), report.lossy_note or ""),
                H.table([r.model_dump() for r in report.lossy]),
            ]
        return "".join(parts)
