"""The compiled inner loop of ``lepton-cm``: a context-mixing binary arithmetic coder for uint8 images.

One function, :func:`run`, both encodes and decodes, so the model the decoder rebuilds is the
encoder's by construction. Every pixel is binarised as a "zero?" flag and, when non-zero, the 8
bits of its value from the most significant down (a binary tree whose node number joins every
context). Each binary decision is predicted by ``NMODELS`` adaptive context models (hashed tables
of probability + hit count, over causal neighbours W N NW NE WW NN NNE, a gradient predictor and
the pixel position), whose stretched probabilities a gated logistic mixer combines; an adaptive
probability map refines the mix. The arithmetic coder is the 32-bit carry-less coder of lpaq with
16-bit probabilities.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

NMODELS = 8
MIXSETS = 257 * 8  # mixer weight sets: tree node x activity bucket
ORDER = np.array([5, 4, 0, 1, 2, 3, 6, 7])  # models by usefulness; the fast path uses the first 2
LIMIT = 255  # counter hit-count cap (sets the slowest adaptation rate)


@nb.njit(cache=True, inline="always")
def _stretch(p: int) -> float:
    q = (p + 0.5) / 65536.0
    return math.log(q / (1.0 - q))


@nb.njit(cache=True, inline="always")
def _h(a: int, b: int) -> int:
    return ((a * 0x2F0B3C5D + b * 0x5BD1E995 + 0x3C6EF372) ^ (a >> 7)) & 0xFFFFFFFF


@nb.njit(cache=True, inline="always")
def _adapt(packed, target: int, rec):
    """One adaptive-counter update: probability (high 16 bits) moves toward ``target`` at the rate of its
    hit count (low 16 bits), which saturates at LIMIT."""
    t = np.int64(packed)
    p = t >> 16
    cnt = t & 0xFFFF
    p = p + (((target - p) * rec[cnt]) >> 16)
    p = min(max(p, 32), 65503)
    if cnt < LIMIT:
        cnt += 1
    return np.uint32((p << 16) | cnt)


@nb.njit(cache=True)
def run(images, buf, encode, tbits):  # noqa: C901 - one tight loop is the point
    """Encode ``images`` [N, H, W] uint8 into ``buf`` (returns bytes written), or decode ``buf`` into
    ``images`` (returns bytes read; reading past the end sees zeros). Tables hold 2**tbits entries."""
    n_img, height, width = images.shape
    mask = (1 << tbits) - 1
    tables = np.empty((NMODELS, 1 << tbits), dtype=np.uint32)
    tables[:] = (32768 << 16)
    weights = np.full((MIXSETS, NMODELS + 1), 0.3, dtype=np.float32)
    apm = np.empty((257 * 4, 33), dtype=np.uint32)
    for i in range(33):
        v = int(65536.0 / (1.0 + math.exp(-((i - 16) / 2.0))))
        v = min(max(v, 64), 65472)
        apm[:, i] = (v << 16)
    rec = np.empty(LIMIT + 1, dtype=np.int64)
    for i in range(LIMIT + 1):
        rec[i] = int(65536.0 / (i + 1.6))
    hashes = np.empty(NMODELS, dtype=np.int64)
    idx = np.empty(NMODELS, dtype=np.int64)
    base = np.empty(NMODELS, dtype=np.int64)
    stretch_tab = np.empty(4096, dtype=np.float64)
    for i in range(4096):
        stretch_tab[i] = _stretch(i * 16 + 8)
    st = np.empty(NMODELS + 1, dtype=np.float64)
    x1 = 0
    x2 = 0xFFFFFFFF
    x = 0
    pos = 0
    nbuf = buf.shape[0]
    if not encode:
        for _ in range(4):
            x = (x << 8) | (buf[pos] if pos < nbuf else 0)
            pos += 1
    for k in range(n_img):
        img = images[k]
        for r in range(height):
            for c in range(width):
                w = img[r, c - 1] if c > 0 else 0
                ww = img[r, c - 2] if c > 1 else 0
                n = img[r - 1, c] if r > 0 else 0
                nn = img[r - 2, c] if r > 1 else 0
                nw = img[r - 1, c - 1] if r > 0 and c > 0 else 0
                ne = img[r - 1, c + 1] if r > 0 and c + 1 < width else 0
                nne = img[r - 2, c + 1] if r > 1 and c + 1 < width else 0
                nww = img[r - 1, c - 2] if r > 0 and c > 1 else 0
                grad = int(n) + int(w) - int(nw)
                pred = min(max(grad, 0), 255)
                act = abs(int(w) - int(nw)) + abs(int(n) - int(nw)) + abs(int(n) - int(ne))
                abucket = 0 if act == 0 else (1 if act < 8 else (2 if act < 32 else (3 if act < 96 else 4)))
                if w == 0 and n == 0 and nw == 0 and ne == 0:
                    abucket = 5 if (ww | nn | nne | nww) == 0 else 6
                hashes[0] = _h(1, (int(w) << 8) | n)
                hashes[1] = _h(2, ((w >> 3) << 15) | ((n >> 3) << 10) | ((nw >> 3) << 5) | (ne >> 3))
                hashes[2] = _h(3, ((n >> 2) << 12) | ((ne >> 2) << 6) | (nn >> 2))
                hashes[3] = _h(4, ((w >> 2) << 12) | ((ww >> 2) << 6) | (nw >> 2))
                hashes[4] = _h(5, (pred << 4) | abucket)
                hashes[5] = _h(6, (r << 8) | (c << 1) | (1 if (w | n) else 0))
                hashes[6] = _h(7, ((w >> 4) << 20) | ((n >> 4) << 16) | ((nw >> 4) << 12) | ((ne >> 4) << 8)
                               | ((ww >> 4) << 4) | (nn >> 4))
                hashes[7] = _h(8, ((nne >> 3) << 15) | ((nww >> 3) << 10) | ((int(n) + int(ne) + int(w)) // 24))
                value = int(img[r, c]) if encode else 0
                node = 0
                cur_grp = -1
                # all 8 neighbours zero: every neighbour context is constant, so only the position
                # and predictor models carry information; skip the rest (most MNIST pixels)
                nact = 2 if abucket == 5 else NMODELS
                while True:
                    if encode:
                        bit = (1 if value != 0 else 0) if node == 0 else (value >> (8 - _depth(node))) & 1
                    # predict
                    grp = node >> 4
                    if grp != cur_grp:  # 16 consecutive nodes share one 64-byte cache line per model
                        cur_grp = grp
                        for q in range(nact):
                            i = ORDER[q]
                            base[i] = ((hashes[i] ^ (grp * 0x9E3779B1)) & mask) & ~15
                    for q in range(nact):
                        i = ORDER[q]
                        j = base[i] | (node & 15)
                        idx[i] = j
                        st[i] = stretch_tab[np.int64(tables[i, j]) >> 20]
                    wset = node * 8 + abucket
                    dot = 0.3 * weights[wset, NMODELS]
                    for q in range(nact):
                        i = ORDER[q]
                        dot += weights[wset, i] * st[i]
                    dot = min(max(dot, -15.0), 15.0)
                    pm = 1.0 / (1.0 + math.exp(-dot))
                    # adaptive probability map on (node, coarse activity), interpolated over stretch(pm)
                    s = (dot + 8.0) * 2.0
                    s = min(max(s, 0.0), 31.999)
                    lo = int(s)
                    fr = s - lo
                    arow = node * 4 + (abucket if abucket < 3 else 3)
                    pa = ((apm[arow, lo] >> 16) * (1.0 - fr) + (apm[arow, lo + 1] >> 16) * fr) / 65536.0
                    pf = 0.5 * pm + 0.5 * pa
                    p16 = int(pf * 65536.0)
                    p16 = min(max(p16, 24), 65512)
                    # code the bit (p16 = P(bit == 1))
                    rng = x2 - x1
                    xmid = x1 + (rng >> 16) * p16 + (((rng & 0xFFFF) * p16) >> 16)
                    if encode:
                        if bit:
                            x2 = xmid
                        else:
                            x1 = xmid + 1
                    else:
                        bit = 1 if x <= xmid else 0
                        if bit:
                            x2 = xmid
                        else:
                            x1 = xmid + 1
                    while ((x1 ^ x2) & 0xFF000000) == 0:
                        if encode:
                            buf[pos] = x2 >> 24
                        else:
                            x = ((x << 8) & 0xFFFFFFFF) | (buf[pos] if pos < nbuf else 0)
                        pos += 1
                        x1 = (x1 << 8) & 0xFFFFFFFF
                        x2 = ((x2 << 8) & 0xFFFFFFFF) | 255
                    # update
                    err = bit - pm
                    lr = 0.02
                    weights[wset, NMODELS] += lr * err * 0.3
                    target = bit << 16
                    for q in range(nact):
                        i = ORDER[q]
                        weights[wset, i] += lr * err * st[i]
                        tables[i, idx[i]] = _adapt(tables[i, idx[i]], target, rec)
                    for j2 in (lo, lo + 1):
                        apm[arow, j2] = _adapt(apm[arow, j2], target, rec)
                    # next node
                    if node == 0:
                        if bit == 0:
                            break
                        node = 1
                    else:
                        node = node * 2 + bit
                        if node >= 256:
                            break
                if not encode:
                    img[r, c] = 0 if node == 0 else node - 256
    if encode:
        for _ in range(4):
            buf[pos] = x1 >> 24
            x1 = (x1 << 8) & 0xFFFFFFFF
            pos += 1
        return pos
    return pos


@nb.njit(cache=True, inline="always")
def _depth(node: int) -> int:
    d = 0
    while node > 1:
        node >>= 1
        d += 1
    return d + 1
