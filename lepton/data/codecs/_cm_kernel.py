"""The compiled inner loop of ``lepton-cm``: a context-mixing binary arithmetic coder for uint8 images.

One function, :func:`run`, both encodes and decodes, so the model the decoder rebuilds is the
encoder's by construction. Every pixel is binarised as a "zero?" flag and, when non-zero, the 8
bits of its value from the most significant down (a binary tree whose node number joins every
context). Each binary decision is predicted by ``NMODELS`` adaptive context models (hashed tables
of probability + hit count over causal neighbours W N NW NE WW NN NNE NWW, a gradient predictor,
several linear predictors, the image's dominant near-white value so far, and the pixel position).
Two fixed-point logistic mixers with different weight-set selectors (tree node x activity; tree
depth x strongest neighbour), whose learning rates start high and decay with each set's use,
combine the models' stretched probabilities; their average is refined by two interpolated adaptive
probability maps. The arithmetic coder is the 32-bit carry-less coder of lpaq with 16-bit
probabilities.

When all eight neighbours are zero (most MNIST pixels) only the position and predictor models, the
first mixer and the first probability map run.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

NMODELS = 9
NFAST = 2  # models 0 (position) and 1 (predictor) are the only ones the all-zero fast path runs
MIXSETS = 257 * 10  # mixer 1 weight sets: tree node x activity bucket (0..8)
MIXSETS2 = 9 * 32  # mixer 2 weight sets: tree depth x (max(W, N, NW, NE) >> 3)
NW_ = NMODELS + 2  # weight-row length: models, bias, one zero pad
LIMIT = 255  # counter hit-count cap (sets the slowest adaptation rate)
REC_D = 2.5  # counter rate is 1 / (hits + REC_D)
LR_MIN, LR_K, LR_D = 0.005, 2.0, 20.0  # mixer rate LR_MIN + LR_K / (updates + LR_D)
WINIT = 0.15  # initial mixer weight
APMW = 0.6  # final p = (1 - APMW) * mixer + APMW * mean of the two maps
BIAS = 77  # the mixers' constant input, 0.3 in stretch * 256 units
LRN = 8192  # learning-rate schedule table length (update counts saturate here)


@nb.njit(cache=True, inline="always")
def _stretch(p: int) -> float:
    q = (p + 0.5) / 65536.0
    return math.log(q / (1.0 - q))


@nb.njit(cache=True, inline="always")
def _h(a: int, b: int) -> int:
    return ((a * 0x2F0B3C5D + b * 0x5BD1E995 + 0x3C6EF372) ^ (a >> 7)) & 0xFFFFFFFF


@nb.njit(cache=True, inline="always")
def _adapt(packed, target: int, rec):
    """One adaptive-counter update: probability (high 16 bits, stored XOR 0x8000 so that an all-zero
    slot means p = 1/2 and no hits) moves toward ``target`` at the rate of its hit count (low 16
    bits), which saturates at LIMIT."""
    t = np.int64(packed)
    p = (t >> 16) ^ 0x8000
    cnt = t & 0xFFFF
    p = p + (((target - p) * rec[cnt]) >> 16)
    p = min(max(p, 32), 65503)
    if cnt < LIMIT:
        cnt += 1
    return np.uint32(((p ^ 0x8000) << 16) | cnt)


@nb.njit(cache=True, inline="always")
def _apm(a, row: int, lo: int, fr: float) -> float:
    return (((a[row, lo] >> 16) ^ 0x8000) * (1.0 - fr) + ((a[row, lo + 1] >> 16) ^ 0x8000) * fr) * (1.0 / 65536.0)


def run(images: np.ndarray, buf: np.ndarray, encode: bool, tbits: int) -> int:
    """Encode ``images`` [N, H, W] uint8 into ``buf`` (returns bytes written), or decode ``buf`` into
    ``images`` (returns bytes read; reading past the end sees zeros). Context tables hold 2**tbits
    entries per model; they start all-zero (= empty), which ``np.zeros`` provides without a fill pass."""
    tables = np.zeros((NMODELS, 1 << tbits), dtype=np.uint32)
    return _run(images, buf, encode, tables)


@nb.njit(cache=True)
def _run(images, buf, encode, tables):  # one tight loop is the point
    n_img, height, width = images.shape
    mask = tables.shape[1] - 1
    weights = np.full((MIXSETS, NW_), int(WINIT * 65536), dtype=np.int64)  # 16.16 fixed point
    weights2 = np.full((MIXSETS2, NW_), int(WINIT * 65536), dtype=np.int64)
    wcnt = np.zeros(MIXSETS, dtype=np.int64)
    wcnt2 = np.zeros(MIXSETS2, dtype=np.int64)
    lrt = np.empty(LRN, dtype=np.float64)
    for i in range(LRN):
        lrt[i] = (LR_MIN + LR_K / (i + LR_D)) * 262144.0
    apm = np.empty((257 * 8, 33), dtype=np.uint32)  # (node, activity) x stretch(p) buckets
    apm2 = np.empty((257 * 64, 33), dtype=np.uint32)  # (node, W >> 5, N >> 5) x stretch(p) buckets
    for i in range(33):
        v = int(65536.0 / (1.0 + math.exp(-((i - 16) / 2.0))))
        v = min(max(v, 64), 65472)
        apm[:, i] = ((v ^ 0x8000) << 16)
        apm2[:, i] = ((v ^ 0x8000) << 16)
    rec = np.empty(LIMIT + 1, dtype=np.int64)
    for i in range(LIMIT + 1):
        rec[i] = int(65536.0 / (i + REC_D))
    hashes = np.empty(NMODELS, dtype=np.int64)
    idx = np.empty(NMODELS, dtype=np.int64)
    base = np.empty(NMODELS, dtype=np.int64)
    stretch_tab = np.empty(4096, dtype=np.int64)  # stretch(p) * 256 by the top 12 bits of p
    for i in range(4096):
        stretch_tab[i] = round(_stretch(i * 16 + 8) * 256.0)
    sq = np.empty(4097, dtype=np.float64)  # squash(d) for d = (i - 2048) / 128
    for i in range(4097):
        sq[i] = 1.0 / (1.0 + math.exp(-(i - 2048) / 128.0))
    st = np.zeros(NW_, dtype=np.int64)
    st[NMODELS] = BIAS
    satc = np.zeros(256, dtype=np.int64)
    sel2 = 0
    a2sel = 0
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
        satc[:] = 0  # per-image counts of values >= 240; mode = the most frequent so far (0: none)
        mode = 0
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
                abucket = 0 if act == 0 else (1 if act < 8 else (2 if act < 32 else (3 if act < 96 else
                          (4 if act < 192 else (7 if act < 384 else 8)))))
                fast = False
                if w == 0 and n == 0 and nw == 0 and ne == 0:
                    if (ww | nn | nne | nww) == 0:
                        abucket = 5
                        fast = True
                    else:
                        abucket = 6
                hashes[0] = _h(6, (r << 8) | (c << 1) | (1 if (w | n) else 0))
                hashes[1] = _h(5, (pred << 4) | abucket)
                nact = NFAST
                if not fast:
                    nact = NMODELS
                    mx = max(max(w, n), max(nw, ne))
                    p1 = min(max(int(n) + int(ne) - int(nne), 0), 255)
                    p3 = min(max(2 * int(n) - int(nn), 0), 255)
                    p4 = min(max(2 * int(w) - int(ww), 0), 255)
                    hashes[2] = _h(1, (int(w) << 8) | n)
                    hashes[3] = _h(3, ((n >> 2) << 12) | ((ne >> 2) << 6) | (nn >> 2))
                    hashes[4] = _h(4, ((w >> 2) << 12) | ((ww >> 2) << 6) | (nw >> 2))
                    hashes[5] = _h(8, ((nne >> 3) << 15) | ((nww >> 3) << 10) | ((int(n) + int(ne) + int(w)) // 24))
                    hashes[6] = _h(9, (mode << 16) | ((mx >> 3) << 8) | ((w >> 5) << 3) | (n >> 5))
                    hashes[7] = _h(10, ((p1 >> 2) << 8) | (w >> 4))
                    hashes[8] = _h(12, ((p3 >> 3) << 8) | (p4 >> 3))
                    sel2 = mx >> 3
                    a2sel = ((w >> 5) << 3) | (n >> 5)
                arsel = abucket if abucket < 3 else (3 if abucket != 5 else 4)
                value = int(img[r, c]) if encode else 0
                node = 0
                depth = 0
                cur_grp = -1
                while True:
                    if encode:
                        bit = (1 if value != 0 else 0) if node == 0 else (value >> (8 - depth)) & 1
                    # predict
                    grp = node >> 4
                    if grp != cur_grp:  # 16 consecutive nodes share one 64-byte cache line per model
                        cur_grp = grp
                        for i in range(nact):
                            base[i] = ((hashes[i] ^ (grp * 0x9E3779B1)) & mask) & ~15
                    for i in range(nact):
                        j = base[i] | (node & 15)
                        idx[i] = j
                        st[i] = stretch_tab[(np.int64(tables[i, j]) >> 20) ^ 0x800]
                    wset = node * 10 + abucket
                    wr1 = weights[wset]
                    if fast:
                        a1 = wr1[0] * st[0] + wr1[1] * st[1] + wr1[NMODELS] * BIAS
                    else:
                        a1 = 0
                        for i in range(NW_):
                            a1 += wr1[i] * st[i]
                    d1 = (a1 >> 16) * (1.0 / 256.0)
                    d1 = min(max(d1, -15.99), 15.99)
                    p1m = sq[int(d1 * 128.0 + 2048.5)]
                    if fast:
                        dot = d1
                        pm = p1m
                    else:
                        wset2 = depth * 32 + sel2
                        wr2 = weights2[wset2]
                        a2 = 0
                        for i in range(NW_):
                            a2 += wr2[i] * st[i]
                        d2 = (a2 >> 16) * (1.0 / 256.0)
                        d2 = min(max(d2, -15.99), 15.99)
                        dot = 0.5 * (d1 + d2)
                        pm = sq[int(dot * 128.0 + 2048.5)]
                    # adaptive probability maps, interpolated over stretch(pm)
                    s = (dot + 8.0) * 2.0
                    s = min(max(s, 0.0), 31.999)
                    lo = int(s)
                    fr = s - lo
                    arow = node * 8 + arsel
                    pa = _apm(apm, arow, lo, fr)
                    if fast:
                        pf = 0.5 * pm + 0.5 * pa
                    else:
                        arow2 = node * 64 + a2sel
                        pf = (1.0 - APMW) * pm + APMW * 0.5 * (pa + _apm(apm2, arow2, lo, fr))
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
                    target = bit << 16
                    c1 = wcnt[wset]
                    if c1 < LRN - 1:
                        wcnt[wset] = c1 + 1
                    e1 = int(lrt[c1] * (bit - p1m))
                    if fast:
                        wr1[0] += (st[0] * e1) >> 10
                        wr1[1] += (st[1] * e1) >> 10
                        wr1[NMODELS] += (BIAS * e1) >> 10
                    else:
                        for i in range(NW_):
                            wr1[i] += (st[i] * e1) >> 10
                    for i in range(nact):
                        tables[i, idx[i]] = _adapt(tables[i, idx[i]], target, rec)
                    apm[arow, lo] = _adapt(apm[arow, lo], target, rec)
                    apm[arow, lo + 1] = _adapt(apm[arow, lo + 1], target, rec)
                    if not fast:
                        c2 = wcnt2[wset2]
                        if c2 < LRN - 1:
                            wcnt2[wset2] = c2 + 1
                        e2 = int(lrt[c2] * (bit - sq[int(d2 * 128.0 + 2048.5)]))
                        for i in range(NW_):
                            wr2[i] += (st[i] * e2) >> 10
                        apm2[arow2, lo] = _adapt(apm2[arow2, lo], target, rec)
                        apm2[arow2, lo + 1] = _adapt(apm2[arow2, lo + 1], target, rec)
                    # next node
                    if node == 0:
                        if bit == 0:
                            break
                        node = 1
                    else:
                        node = node * 2 + bit
                        if node >= 256:
                            break
                    depth += 1
                if not encode:
                    img[r, c] = 0 if node == 0 else node - 256
                v = int(img[r, c])
                if v >= 240:
                    satc[v] += 1
                    if satc[v] > satc[mode]:
                        mode = v
    if encode:
        for _ in range(4):
            buf[pos] = x1 >> 24
            x1 = (x1 << 8) & 0xFFFFFFFF
            pos += 1
        return pos
    return pos
