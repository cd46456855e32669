"""The compiled inner loops of ``lepton-cm``: causal pixel features, the context tree, and rANS.

Every pixel is coded with one 257-symbol rANS step (256 values and an escape) whose distribution is the
one stored for the leaf of a decision tree the pixel's causal *features* fall into. The encoder and
the decoder compute the features with the same function (:func:`_features`), so the leaf the decoder
finds is the encoder's by construction.

Features (``NFEAT``, in this order) of pixel (r, c) of an image, from pixels already coded (missing
neighbours outside the image read as 0):

====  ============================================================================================
 0-11 W, N, NW, NE, WW, NN, NNE, NWW, NNW, NEE, WWW, NNEE (the neighbours, named by compass steps)
 12   row r          13  column c
 14   the image's near-white level: its most frequent value >= 240 (the smallest on a tie; 0 if
      none), sent once per image before its pixels (side information, coded with its own
      distribution)
 15   gradient predictor clip(N + W - NW, 0, 255)
 16   max(W, N, NW, NE)       17  N + NE - NNE      18  2W - WW      19  2N - NN
 20   activity |W - NW| + |N - NW| + |N - NE|       21  W + N + NW + NE
 22   the LOCO-I median predictor of W, N, NW
====  ============================================================================================

rANS: 63-bit state in [2**31, 2**63), 32-bit output words, 16-bit probabilities (so the coder's
rounding costs ~2**-15 of a bit per symbol). The encoder codes the pixels in reverse and writes its
words back to front, so the decoder reads forward.
"""

from __future__ import annotations

import numba as nb
import numpy as np

NFEAT = 23
NSYM = 257  # 256 pixel values and the escape symbol
ESC = 256
PREC = 16
TOTAL = 1 << PREC
RANS_L = 1 << 31
X_MAX = RANS_L >> PREC  # a symbol of frequency f is coded from a state below (X_MAX * f) << 32
LEAF = 255  # the feature id that marks a leaf in ``feat``
LANES = 16  # images decoded side by side
FAST_MODES = 17  # mode values with a precomputed all-zero-neighbourhood leaf: 0 and 240..255


PAD_T, PAD_L, PAD_R = 2, 3, 2  # the zero border ``_features`` reads instead of checking bounds


@nb.njit(cache=True, inline="always")
def _features(p, r: int, c: int, mode: int, f) -> None:
    """Write the features of pixel (r, c) to ``f`` from the padded plane ``p`` (the image at offset
    (PAD_T, PAD_L) in a zero border)."""
    y = r + PAD_T
    x = c + PAD_L
    w = np.int64(p[y, x - 1])
    n = np.int64(p[y - 1, x])
    nw = np.int64(p[y - 1, x - 1])
    ne = np.int64(p[y - 1, x + 1])
    ww = np.int64(p[y, x - 2])
    nn = np.int64(p[y - 2, x])
    nne = np.int64(p[y - 2, x + 1])
    nww = np.int64(p[y - 1, x - 2])
    nnw = np.int64(p[y - 2, x - 1])
    nee = np.int64(p[y - 1, x + 2])
    www = np.int64(p[y, x - 3])
    nnee = int(p[y - 2, x + 2])
    f[0] = w
    f[1] = n
    f[2] = nw
    f[3] = ne
    f[4] = ww
    f[5] = nn
    f[6] = nne
    f[7] = nww
    f[8] = nnw
    f[9] = nee
    f[10] = www
    f[11] = nnee
    f[12] = r
    f[13] = c
    f[14] = mode
    f[15] = min(max(n + w - nw, 0), 255)
    f[16] = max(max(w, n), max(nw, ne))
    f[17] = n + ne - nne
    f[18] = 2 * w - ww
    f[19] = 2 * n - nn
    f[20] = abs(w - nw) + abs(n - nw) + abs(n - ne)
    f[21] = w + n + nw + ne
    if nw >= max(w, n):
        f[22] = min(w, n)
    elif nw <= min(w, n):
        f[22] = max(w, n)
    else:
        f[22] = w + n - nw


@nb.njit(cache=True, inline="always")
def _image_mode(img) -> int:
    """The image's most frequent value >= 240 (the smallest on a tie), 0 if it has none."""
    counts = np.zeros(16, dtype=np.int64)
    for v in img.ravel():
        if v >= 240:
            counts[v - 240] += 1
    best = 0
    for i in range(16):
        if counts[i] > counts[best]:
            best = i
    return 0 if counts[best] == 0 else 240 + best


@nb.njit(cache=True, inline="always")
def _step(nodes, node: int, f) -> int:
    """One step down the tree (see ``CMModel.nodes``): the left child, or the right one (left + 1)
    when the node's feature exceeds its threshold; a leaf steps to itself."""
    v = nodes[node]
    return (v >> 32) + (f[v & 0xFF] > ((v >> 8) & 0xFFFF) - 32768)


@nb.njit(cache=True, inline="always")
def _leaf(nodes, leafmap, depth: int, f) -> int:
    """The leaf of features ``f``: ``depth`` branch-free steps from the root (a leaf reached early
    steps to itself), so several pixels' descents overlap in the CPU."""
    node = 0
    for _ in range(depth):
        node = _step(nodes, node, f)
    return leafmap[node]


@nb.njit(cache=True, inline="always")
def _quiet(p, r: int, c: int) -> bool:
    """All twelve neighbours of (r, c) are zero (the features are then fixed but for r, c and mode)."""
    y = r + PAD_T
    x = c + PAD_L
    return (
        p[y, x - 1]
        | p[y, x - 2]
        | p[y, x - 3]
        | p[y - 1, x - 2]
        | p[y - 1, x - 1]
        | p[y - 1, x]
        | p[y - 1, x + 1]
        | p[y - 1, x + 2]
        | p[y - 2, x - 1]
        | p[y - 2, x]
        | p[y - 2, x + 1]
        | p[y - 2, x + 2]
    ) == 0


@nb.njit(cache=True, inline="always")
def _lane_leaves(
    pad, r: int, c: int, mode, lanes: int, nodes, leafmap, depth: int, fast, use_fast: bool, f, node, act, leaf
) -> None:
    """``leaf[j]`` for pixel (r, c) of each of the first ``lanes`` images. The lanes not served by the
    fast table get their features in rows 0, 1, ... of ``f`` (``act`` maps a row back to its lane) and
    descend level by level side by side, so their load chains overlap."""
    na = 0
    for j in range(lanes):
        if use_fast and _quiet(pad[j], r, c):
            leaf[j] = fast[0 if mode[j] == 0 else mode[j] - 239, r, c]
        else:
            _features(pad[j], r, c, mode[j], f[na])
            act[na] = j
            node[na] = 0
            na += 1
    for _ in range(depth):
        for a in range(na):
            node[a] = _step(nodes, node[a], f[a])
    for a in range(na):
        leaf[act[a]] = leafmap[node[a]]


@nb.njit(cache=True, nogil=True)
def feature_rows(images, rows):
    """Features of every pixel of ``images`` [N, H, W], as ``rows`` [N*H*W, NFEAT] (int16)."""
    n_img, height, width = images.shape
    f = np.empty(NFEAT, dtype=np.int64)
    i = 0
    pad = np.zeros((height + PAD_T, width + PAD_L + PAD_R), dtype=np.uint8)
    for k in range(n_img):
        img = images[k]
        pad[PAD_T:, PAD_L : PAD_L + width] = img
        mode = _image_mode(img)
        for r in range(height):
            for c in range(width):
                _features(pad, r, c, mode, f)
                for j in range(NFEAT):
                    rows[i, j] = f[j]
                i += 1


@nb.njit(cache=True, nogil=True)
def leaf_counts(images, nodes, leafmap, depth, n_leaves):
    """How often each value occurs in each leaf over ``images``, and in row ``n_leaves`` how often
    each near-white level does: [n_leaves + 1, 256] int64."""
    n_img, height, width = images.shape
    out = np.zeros((n_leaves + 1, 256), dtype=np.int64)
    f = np.empty(NFEAT, dtype=np.int64)
    pad = np.zeros((height + PAD_T, width + PAD_L + PAD_R), dtype=np.uint8)
    for k in range(n_img):
        img = images[k]
        pad[PAD_T:, PAD_L : PAD_L + width] = img
        mode = _image_mode(img)
        out[n_leaves, mode] += 1
        for r in range(height):
            for c in range(width):
                _features(pad, r, c, mode, f)
                out[_leaf(nodes, leafmap, depth, f), img[r, c]] += 1
    return out


@nb.njit(cache=True, nogil=True)
def fast_leaves(nodes, leafmap, depth, height, width):
    """The leaf of every (mode, r, c) whose twelve neighbours are all zero: [FAST_MODES, H, W]."""
    out = np.empty((FAST_MODES, height, width), dtype=np.int32)
    f = np.zeros(NFEAT, dtype=np.int64)
    for m in range(FAST_MODES):
        for r in range(height):
            for c in range(width):
                f[12] = r
                f[13] = c
                f[14] = 0 if m == 0 else 239 + m
                out[m, r, c] = _leaf(nodes, leafmap, depth, f)
    return out


@nb.njit(cache=True, nogil=True)
def encode(images, nodes, leafmap, depth, fast, start, freq, buf):
    """rANS-code ``images`` [N, H, W] into ``buf`` (uint32 words, filled from the end); returns the
    index of the first word written. ``start``/``freq`` [n_leaves + 1, NSYM] are the leaf
    distributions and, last, the near-white levels'.

    Coding order: the images in groups of LANES; a group's levels, then its pixels in raster order,
    and within a pixel position image by image (what lets the decoder find several leaves at once)."""
    n_img, height, width = images.shape
    n_sym = n_img * (height * width + 1)
    mode_row = start.shape[0] - 1
    leaves = np.empty(n_sym, dtype=np.int32)
    values = np.empty(n_sym, dtype=np.uint8)
    f = np.empty((LANES, NFEAT), dtype=np.int32)
    mode = np.zeros(LANES, dtype=np.int64)
    node = np.zeros(LANES, dtype=np.int64)
    act = np.zeros(LANES, dtype=np.int64)
    leaf = np.zeros(LANES, dtype=np.int64)
    use_fast = fast.shape[1] == height and fast.shape[2] == width
    pad = np.zeros((LANES, height + PAD_T, width + PAD_L + PAD_R), dtype=np.uint8)
    i = 0
    for g in range(0, n_img, LANES):
        lanes = min(LANES, n_img - g)
        for j in range(lanes):
            pad[j, PAD_T:, PAD_L : PAD_L + width] = images[g + j]
            mode[j] = _image_mode(images[g + j])
            leaves[i] = mode_row
            values[i] = mode[j]
            i += 1
        for r in range(height):
            for c in range(width):
                _lane_leaves(pad, r, c, mode, lanes, nodes, leafmap, depth, fast, use_fast, f, node, act, leaf)
                for j in range(lanes):
                    leaves[i] = leaf[j]
                    values[i] = images[g + j, r, c]
                    i += 1
    x = np.int64(RANS_L)
    pos = buf.shape[0]
    for i in range(n_sym - 1, -1, -1):
        leaf = leaves[i]
        v = int(values[i])
        if freq[leaf, v] == 0:  # a value this leaf never saw: escape, then 8 raw bits
            s, fr = v << 8, 256
            if (x >> 32) >= X_MAX * fr:
                pos -= 1
                buf[pos] = x & 0xFFFFFFFF
                x >>= 32
            x = ((x // fr) << PREC) + (x % fr) + s
            v = ESC
        s, fr = np.int64(start[leaf, v]), np.int64(freq[leaf, v])
        if (x >> 32) >= X_MAX * fr:
            pos -= 1
            buf[pos] = x & 0xFFFFFFFF
            x >>= 32
        x = ((x // fr) << PREC) + (x % fr) + s
    pos -= 2
    buf[pos] = x >> 32
    buf[pos + 1] = x & 0xFFFFFFFF
    return pos


@nb.njit(cache=True, inline="always")
def _find(cum, leaf: int, slot: int) -> int:
    """The symbol s of ``leaf`` with cum[s] <= slot < cum[s + 1] (zero-width symbols are skipped):
    eight halving steps without branches over 0..255, then the escape (256), whose upper end is
    TOTAL (stored as 0 in the uint16 table, so it is never read here)."""
    s = 0
    step = 128
    while step > 0:
        t = s + step
        s = t if cum[leaf, t] <= slot else s
        step >>= 1
    return ESC if cum[leaf, ESC] <= slot else s


@nb.njit(cache=True, nogil=True)
def decode(images, nodes, leafmap, depth, fast, cum, words):
    """Decode ``words`` into ``images`` [N, H, W] (in the encoder's order); returns (words read, final
    state). A consistent stream is read exactly and ends in state RANS_L; reading past the end sees
    zeros; a near-white level that is not 0 or 240..255 stops the decoder with words read = -1."""
    n_img, height, width = images.shape
    nw_ = words.shape[0]
    f = np.empty((LANES, NFEAT), dtype=np.int32)
    mode = np.zeros(LANES, dtype=np.int64)
    leaf = np.zeros(LANES, dtype=np.int64)
    mode_row = cum.shape[0] - 1
    node = np.zeros(LANES, dtype=np.int64)
    act = np.zeros(LANES, dtype=np.int64)
    use_fast = fast.shape[1] == height and fast.shape[2] == width
    if nw_ < 2 or words[0] >= 1 << 31:  # the encoder's final state is below 2**63
        return 0, np.int64(0)
    x = (np.int64(words[0]) << 32) | np.int64(words[1])
    pos = 2
    if x < RANS_L:
        return 0, x
    pad = np.zeros((LANES, height + PAD_T, width + PAD_L + PAD_R), dtype=np.uint8)
    for g in range(0, n_img, LANES):
        lanes = min(LANES, n_img - g)
        for j in range(lanes):
            s, x, pos = _decode_symbol(cum, mode_row, x, words, pos)
            if s != 0 and s < 240:
                return -1, x
            mode[j] = s
        for r in range(height):
            for c in range(width):
                _lane_leaves(pad, r, c, mode, lanes, nodes, leafmap, depth, fast, use_fast, f, node, act, leaf)
                for j in range(lanes):
                    s, x, pos = _decode_symbol(cum, leaf[j], x, words, pos)
                    images[g + j, r, c] = s
                    pad[j, r + PAD_T, c + PAD_L] = s
    return pos, x


@nb.njit(cache=True, inline="always")
def _decode_symbol(cum, row: int, x, words, pos: int):
    """One value with distribution ``row`` (an escape reads 8 raw bits); returns (value, state, pos)."""
    slot = x & (TOTAL - 1)
    s = 0 if slot < cum[row, 1] else _find(cum, row, slot)
    st = np.int64(cum[row, s])
    # the frequency, in 1..TOTAL, from the uint16 table whose last column (TOTAL) is stored as 0
    x = (((np.int64(cum[row, s + 1]) - st - 1) & (TOTAL - 1)) + 1) * (x >> PREC) + slot - st
    if x < RANS_L:
        x = (x << 32) | (np.int64(words[pos]) if pos < words.shape[0] else 0)
        pos += 1
    if s == ESC:
        slot = x & (TOTAL - 1)
        s = slot >> 8
        x = 256 * (x >> PREC) + slot - (s << 8)
        if x < RANS_L:
            x = (x << 32) | (np.int64(words[pos]) if pos < words.shape[0] else 0)
            pos += 1
    return s, x, pos
