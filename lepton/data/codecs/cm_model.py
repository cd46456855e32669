"""The learned model of ``lepton-cm``: a decision tree over causal pixel features and one value
distribution per leaf, fitted to the images it will code and stored in a few compact bytes.

The tree is grown with scikit-learn (``DecisionTreeClassifier``, log-loss, best-first to ``leaves``
leaves) on the features of a sample of the pixels (:mod:`lepton.data.codecs._cm_kernel`); the leaf
distributions then count every pixel of the images. Each count is stored as a one-byte log-ratio to
the leaf's largest count (two steps per octave; 0 = not stored), and the 16-bit rANS frequencies
are rebuilt from those bytes with integer arithmetic only, so encoder and decoder agree on every
platform. Values seen only once in a leaf are not stored: they and any value the leaf never saw cost
an escape (its weight is the number of values seen once, Good-Turing style) plus 8 raw bits.
(Measured on MNIST: finer steps or keeping the singletons cost more table bytes than they save.)

Serialized model (before lzma): ``b"LCMT"``, version 1, NFEAT, leaves (u32), tree bytes (u32), the
tree in preorder (a node is its feature id, then an int16 threshold for an internal node, or
``255`` for a leaf), then the [leaves + 1, 257] byte table (the leaves, then the distribution of the
images' near-white levels, which are sent once per image) as a bitmap of its non-zero entries
(``np.packbits`` by row) followed by those entries in row order. ``from_bytes`` validates everything
(counts, feature ids, preorder shape, depth) and raises FormatError on a forged or truncated model.
"""

from __future__ import annotations

import lzma
import os
import struct
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

import numpy as np

from lepton.data.codecs import _cm_kernel as K
from lepton.errors import FormatError

MAGIC = b"LCMT"
VERSION = 1
HEAD = struct.Struct("<4sBBII")
MAX_LEAVES = 1 << 16
MAX_DEPTH = 16  # the deepest tree the kernels accept
MAX_MODEL_BYTES = 16 << 20
STEPS = 2  # quantized log-count steps per octave
MIN_COUNT = 2  # rarer values of a leaf go through the escape


def _weights() -> np.ndarray:
    """W[q] ~ 2**((q - 255) / STEPS) * 2**40 for q >= 1 (W[0] = 0), by an integer recurrence (it
    reaches 0 for q below ~175; such values still get frequency 1)."""
    w = np.zeros(256, dtype=np.int64)
    w[255] = 1 << 40
    for q in range(254, 0, -1):
        w[q] = (int(w[q + 1]) * 46341) >> 16  # 46341 / 65536 = 2 ** (-1 / 2)
    return w


WEIGHTS = _weights()


def quantize_counts(counts: np.ndarray) -> np.ndarray:
    """[L, 256] counts -> [L, NSYM] log-ratio bytes (0 = absent); the escape weighs the singletons."""
    counts = np.asarray(counts, dtype=np.float64)
    esc = np.maximum(((counts > 0) & (counts < MIN_COUNT)).sum(1), 1).astype(np.float64)
    full = np.concatenate([np.where(counts >= MIN_COUNT, counts, 0), esc[:, None]], axis=1)
    top = full.max(1, keepdims=True)
    with np.errstate(divide="ignore"):
        q = 255 + np.round(STEPS * np.log2(full / top))
    q = np.where(full > 0, np.clip(q, 1, 255), 0)
    return q.astype(np.uint8)


def frequencies(q: np.ndarray) -> np.ndarray:
    """[L, NSYM] log-ratio bytes -> [L, NSYM] int64 frequencies summing to 2**16, >= 1 where q > 0.

    Integer arithmetic only: every platform rebuilds the same table from the same bytes."""
    w = WEIGHTS[q]
    total = w.sum(1, keepdims=True)
    present = q > 0
    f = np.where(present, np.maximum((w * K.TOTAL) // np.maximum(total, 1), 1), 0)
    for i in range(f.shape[0]):  # fix each row's sum on its largest entries
        diff = K.TOTAL - int(f[i].sum())
        while diff != 0:
            j = int(np.argmax(f[i]))
            step = diff if diff > 0 else -min(-diff, int(f[i, j]) - 1)
            f[i, j] += step
            diff -= step
    return f


@dataclass(frozen=True)
class CMModel:
    """A fitted tree, its leaves' log-ratio bytes, and those of the images' near-white levels.

    ``tree``: [nodes, 3] int32 rows (feature id, threshold, right child) in preorder, so an internal
    node's left child is the next row (go left when feature <= threshold); a leaf row is
    (LEAF, leaf number, 0), leaves numbered in preorder. ``q``: [leaves + 1, NSYM] uint8, the last row
    for the per-image near-white level (feature 14).
    """

    tree: np.ndarray
    q: np.ndarray

    @property
    def leaves(self) -> int:
        return int(self.q.shape[0]) - 1

    @cached_property
    def freq(self) -> np.ndarray:
        return frequencies(self.q)

    @cached_property
    def start(self) -> np.ndarray:
        return np.concatenate([np.zeros((len(self.q), 1), np.int64), np.cumsum(self.freq, 1)[:, :-1]], 1)

    @cached_property
    def cum(self) -> np.ndarray:
        """[leaves + 1, NSYM + 1] uint16 cumulative frequencies, the decoder's search table (half the
        cache of int32). Only the last column, TOTAL = 2**16, does not fit and is stored as 0 (every
        other entry is below TOTAL, because the escape's frequency is >= 1); a decoded symbol's
        frequency, in 1..TOTAL, is then ((cum[s + 1] - cum[s] - 1) mod 2**16) + 1."""
        cum = np.concatenate([np.zeros((len(self.q), 1), np.int64), np.cumsum(self.freq, 1)], 1)
        return (cum & 0xFFFF).astype(np.uint16)

    @cached_property
    def nodes(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The kernels' form of the tree (see ``_cm_kernel._leaf``): ``(nodes, leafmap, depth)``.

        ``nodes[i]`` (int64) packs ``(left child << 32) | ((threshold + 32768) << 8) | feature``;
        nodes are numbered breadth-first, so the right child is ``left + 1``. A leaf is its own left
        child with threshold 32767 (no feature exceeds it), so a descent of exactly ``depth`` steps
        (the deepest leaf's level) ends on every path's leaf; ``leafmap[i]`` is node i's leaf number.
        The table is 8 bytes per node (~32 KB for 2,048 leaves), so a descent stays in L1."""
        rows = [tuple(int(v) for v in r) for r in self.tree.tolist()]
        nodes = np.zeros(len(rows), np.int64)
        leafmap = np.zeros(len(rows), np.int32)
        level = np.zeros(len(rows), np.int64)
        number = {0: 0}  # tree row (preorder) -> node number (breadth-first)
        queue, nxt = deque([0]), 1
        while queue:
            row = queue.popleft()
            i = number[row]
            fid, t, right = rows[row]
            if fid == K.LEAF:
                nodes[i] = (i << 32) | (0xFFFF << 8)
                leafmap[i] = t
            else:
                number[row + 1], number[right] = nxt, nxt + 1
                level[nxt] = level[nxt + 1] = level[i] + 1
                queue += (row + 1, right)
                nodes[i] = (nxt << 32) | ((t + 32768) << 8) | fid
                nxt += 2
        return nodes, leafmap, int(level.max())

    def fast(self, height: int, width: int) -> np.ndarray:
        """Leaves of the all-zero neighbourhood per (mode, r, c) for small planes; empty otherwise."""
        if height * width > 4096:
            return np.zeros((1, 0, 0), np.int32)
        if (height, width) not in self._fast:
            self._fast[height, width] = K.fast_leaves(*self.nodes, height, width)
        return self._fast[height, width]

    @cached_property
    def _fast(self) -> dict[tuple[int, int], np.ndarray]:
        return {}

    def to_bytes(self) -> bytes:
        tree = bytearray()
        for fid, t, _ in self.tree.tolist():
            tree += bytes([K.LEAF]) if fid == K.LEAF else struct.pack("<Bh", fid, t)
        table = np.packbits(self.q > 0, axis=1).tobytes() + self.q[self.q > 0].tobytes()
        body = HEAD.pack(MAGIC, VERSION, K.NFEAT, self.leaves, len(tree)) + bytes(tree) + table
        return lzma.compress(body, preset=9 | lzma.PRESET_EXTREME)

    @classmethod
    def from_bytes(cls, blob: bytes) -> CMModel:
        try:
            dec = lzma.LZMADecompressor()
            body = dec.decompress(blob, MAX_MODEL_BYTES + 1)
        except lzma.LZMAError as e:
            raise FormatError(f"lepton-cm model: not a valid compressed model ({e})") from None
        if len(body) > MAX_MODEL_BYTES or not dec.eof or dec.unused_data:
            raise FormatError("lepton-cm model: truncated, oversized or followed by extra bytes")
        if len(body) < HEAD.size:
            raise FormatError("lepton-cm model: shorter than its header")
        magic, version, nfeat, leaves, tree_len = HEAD.unpack_from(body)
        if magic != MAGIC or version != VERSION or nfeat != K.NFEAT:
            raise FormatError(
                f"lepton-cm model: header {magic!r} v{version} with {nfeat} features is not "
                f"{MAGIC!r} v{VERSION} with {K.NFEAT}; re-encode with this version"
            )
        bitmap = (leaves + 1) * ((K.NSYM + 7) // 8)
        if not 1 <= leaves <= MAX_LEAVES or len(body) < HEAD.size + tree_len + bitmap:
            raise FormatError(
                f"lepton-cm model: {leaves} leaves and a {tree_len}-byte tree do not fit its {len(body)} bytes"
            )
        at = HEAD.size + tree_len
        bits = np.frombuffer(body, np.uint8, count=bitmap, offset=at).reshape(leaves + 1, -1)
        present = np.unpackbits(bits, axis=1, count=K.NSYM).astype(bool)
        values = np.frombuffer(body, np.uint8, offset=at + bitmap)
        if len(values) != present.sum() or (values == 0).any():
            raise FormatError(
                f"lepton-cm model: {len(values)} table bytes for {present.sum()} stored values (or a stored value of 0)"
            )
        q = np.zeros((leaves + 1, K.NSYM), np.uint8)
        q[present] = values
        if (q[:, K.ESC] == 0).any():
            raise FormatError("lepton-cm model: a distribution has no escape weight")
        return cls(_parse_tree(body[HEAD.size : HEAD.size + tree_len], leaves), q)


def _parse_tree(tree: bytes, leaves: int) -> np.ndarray:
    """Preorder bytes -> the [nodes, 3] tree; FormatError unless it is exactly one well-formed tree."""
    rows: list[list[int]] = []
    pending: list[tuple[int, int]] = []  # internal nodes whose right child comes next, with their depth
    pos = n_leaves = depth = 0
    while True:
        if pos >= len(tree):
            raise FormatError("lepton-cm model: the tree ends inside a node")
        fid = tree[pos]
        if fid == K.LEAF:
            rows.append([K.LEAF, n_leaves, 0])
            n_leaves += 1
            pos += 1
            if n_leaves > leaves:
                raise FormatError(f"lepton-cm model: the tree has more leaves than its {leaves} distributions")
            if not pending:
                break
            parent, depth = pending.pop()
            rows[parent][2] = len(rows)
            continue
        if fid >= K.NFEAT or pos + 3 > len(tree):
            raise FormatError(
                f"lepton-cm model: node {len(rows)} has feature id {fid} (expected < {K.NFEAT}) or is truncated"
            )
        rows.append([fid, struct.unpack_from("<h", tree, pos + 1)[0], -1])
        pos += 3
        depth += 1
        if depth > MAX_DEPTH:
            raise FormatError(f"lepton-cm model: the tree is deeper than {MAX_DEPTH}")
        pending.append((len(rows) - 1, depth))
    if pos != len(tree) or n_leaves != leaves:
        raise FormatError(
            f"lepton-cm model: the tree has {n_leaves} leaves for {leaves} distributions "
            f"and {len(tree) - pos} stray bytes"
        )
    return np.array(rows, dtype=np.int32)


def _preorder(t: Any) -> np.ndarray:
    """A fitted sklearn ``tree_`` as the [nodes, 3] preorder tree (integer thresholds: the features are
    integers, so ``x <= 2.5`` is ``x <= 2``)."""
    rows: list[list[int]] = []
    stack: list[tuple[int, int]] = [(0, -1)]  # (sklearn node, row of the parent waiting for its right child)
    n_leaves = 0
    while stack:
        node, parent = stack.pop()
        if parent >= 0:
            rows[parent][2] = len(rows)
        if t.children_left[node] < 0:
            rows.append([K.LEAF, n_leaves, 0])
            n_leaves += 1
        else:
            rows.append([int(t.feature[node]), int(np.floor(t.threshold[node])), -1])
            here = len(rows) - 1
            stack += [(int(t.children_right[node]), here), (int(t.children_left[node]), -1)]
    return np.array(rows, dtype=np.int32)


Progress = Callable[[float, float], None]
"""``progress(done, total)``: seconds of fitting work done of the predicted total (see :func:`fit`)."""
PILOT = 16  # the pilot tree grows on every 16th fitting pixel: ~1/16 of the tree's time; x 16 predicts it within ~35%
COUNT_COST = 2.0  # counting a pixel into its leaf costs 1-3x computing its features (measured on MNIST)
TICK = 0.25  # seconds between progress reports while the tree grows


def fit(
    images: np.ndarray,
    *,
    leaves: int,
    min_leaf: int,
    max_fit_pixels: int,
    max_depth: int = 16,
    seed: int = 0,
    progress: Progress | None = None,
) -> CMModel:
    """Grow the tree (at most ``leaves`` leaves, ``max_depth`` levels) on the features of up to
    ``max_fit_pixels`` pixels of ``images`` [N, H, W] (whole images, evenly spaced), then count every
    pixel of ``images`` into its leaf (and every image's near-white level into the last row).

    ``progress(done, total)`` (optional) is called on the caller's thread, ``done`` never decreasing and the
    last call with ``done == total``; the unit is predicted seconds, so a bar over it shows the time left. The
    tree (most of the time: ~100 s on MNIST's 8M fitting pixels) is one scikit-learn call, so its time is
    predicted as ``PILOT`` times that of a pilot tree on every ``PILOT``-th pixel, grown on the caller's thread
    while the tree grows on a worker thread (the pilot takes the second core, not wall time), and reported as it
    passes; the pixel counting reports after each chunk of images (one chunk per core at a time). Without
    ``progress`` no pilot is grown; the model is the same either way.
    """
    import sklearn.tree  # noqa: F401  (imported before anything is timed: the first import takes seconds)

    n, h, w = images.shape
    take = max(1, min(n, max_fit_pixels // max(1, h * w)))
    sample = images[np.linspace(0, n - 1, take).round().astype(np.int64)] if n > take else images
    rows = np.empty((sample.size, K.NFEAT), dtype=np.int16)
    if progress is not None:  # compile (or load) the kernel first: the features' time predicts the counting's
        K.feature_rows(np.ascontiguousarray(sample[:1]), rows[: h * w])
    t0 = time.perf_counter()
    sample = np.ascontiguousarray(sample)
    parts = _chunks(len(sample), _threads())
    with ThreadPoolExecutor(len(parts)) as pool:  # the kernels release the GIL: one chunk of images per core
        list(pool.map(lambda c: K.feature_rows(sample[c[0] : c[1]], rows[c[0] * h * w : c[1] * h * w]), parts))
    labels = sample.reshape(-1)
    grow = partial(_grow, leaves=leaves, min_leaf=min_leaf, max_depth=max_depth, seed=seed)
    if progress is None:
        tree = grow(rows, labels)
        shape = _shape_only(tree)
        return CMModel(tree, quantize_counts(_count(images, shape, _chunks(n, _threads()))))

    features = time.perf_counter() - t0
    count_s = COUNT_COST * features * images.size / max(1, sample.size)
    done, tree_s, total = features, 0.0, 0.0

    def pilot() -> None:  # on this thread while the tree grows on the other core: it costs no wall time there
        nonlocal tree_s, total
        t = time.perf_counter()
        if len(rows) >= 4 * PILOT:
            grow(rows[::PILOT], labels[::PILOT])
        tree_s = (time.perf_counter() - t) * PILOT
        total = features + tree_s + count_s
        progress(done, total)

    tree = _grow_reporting(grow, rows, labels, lambda s: progress(done + min(s, 0.99 * tree_s), total), pilot)
    done += tree_s
    progress(done, total)
    shape = _shape_only(tree)
    chunks = _chunks(n, 16)

    def counted(chunk: tuple[int, int]) -> None:
        nonlocal done
        done += count_s / len(chunks)
        progress(min(done, total), total)

    counts = _count(images, shape, chunks, counted)
    progress(total, total)
    return CMModel(tree, quantize_counts(counts))


def _threads() -> int:
    """The cores this process may use (at most 4: the kernels are memory-light, but a fit is one of many jobs)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores))


def _chunks(n: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of ``parts`` near-equal runs of ``n`` items (fewer if ``n`` is small; one if 0)."""
    edges = np.linspace(0, n, max(1, min(n, parts)) + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _count(
    images: np.ndarray,
    shape: CMModel,
    chunks: list[tuple[int, int]],
    counted: Callable[[tuple[int, int]], None] | None = None,
) -> np.ndarray:
    """Every pixel of ``images`` counted into its leaf of ``shape``'s tree, the ``chunks`` of images on one thread
    per core (the kernel releases the GIL); the counts are integer sums, the same in any order.
    ``counted(chunk)`` is called on this thread as each chunk finishes."""
    counts = np.zeros((shape.leaves + 1, 256), np.int64)
    with ThreadPoolExecutor(min(_threads(), len(chunks))) as pool:
        jobs = [
            pool.submit(K.leaf_counts, np.ascontiguousarray(images[a:b]), *shape.nodes, shape.leaves) for a, b in chunks
        ]
        for chunk, job in zip(chunks, jobs, strict=True):
            counts += job.result()
            if counted is not None:
                counted(chunk)
    return counts


def _shape_only(tree: np.ndarray) -> CMModel:
    """A model of ``tree`` with placeholder distributions: its node tables, to count pixels into its leaves."""
    return CMModel(tree, np.ones((int((tree[:, 0] == K.LEAF).sum()) + 1, K.NSYM), np.uint8))


def _grow(rows: np.ndarray, labels: np.ndarray, *, leaves: int, min_leaf: int, max_depth: int, seed: int) -> np.ndarray:
    """The preorder tree scikit-learn grows on the feature ``rows`` of the pixel values ``labels``."""
    from sklearn.tree import DecisionTreeClassifier

    with warnings.catch_warnings():  # few pixels with many distinct values look like regression to sklearn
        warnings.simplefilter("ignore", UserWarning)
        fitted = DecisionTreeClassifier(
            criterion="log_loss",
            max_leaf_nodes=max(2, leaves),
            min_samples_leaf=max(1, min_leaf),
            max_depth=max_depth,
            random_state=seed,
        )
        # float32 by column is what the splitter reads feature by feature: no conversion copy, ~14% faster
        fitted.fit(np.asfortranarray(rows, dtype=np.float32), labels)
    return _preorder(fitted.tree_)


def _grow_reporting(
    grow: Callable[[np.ndarray, np.ndarray], np.ndarray],
    rows: np.ndarray,
    labels: np.ndarray,
    elapsed: Callable[[float], None],
    first: Callable[[], None],
) -> np.ndarray:
    """``grow(rows, labels)`` on a daemon thread (scikit-learn's tree builder releases the GIL); here, meanwhile,
    ``first()`` (the pilot tree), then ``elapsed(seconds)`` every ``TICK`` seconds until the tree ends; its
    exception is raised here. A daemon thread, so Ctrl-C ends the process without waiting for the tree."""
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["tree"] = grow(rows, labels)
        except BaseException as e:  # handed to the caller's thread
            out["error"] = e

    t0 = time.perf_counter()
    thread = threading.Thread(target=work, name="lepton-cm-fit", daemon=True)
    thread.start()
    first()
    while thread.is_alive():
        thread.join(TICK)
        elapsed(time.perf_counter() - t0)
    if "error" in out:
        raise out["error"]
    return out["tree"]
