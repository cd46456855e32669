"""Context coding of a 2-D keep-mask (a pruned tensor's kept positions): ``encode_mask`` / ``decode_mask``.

The mask is seen as ``rows x cols`` (a conv weight as ``[out, in*kh*kw]``, a linear weight as ``[out, in]``).
Whole empty rows and columns (removed filters, neurons, input channels) are listed first and then cost
nothing; the remaining sub-mask is coded bit by bit with a binary rANS coder under a semi-static model of
at most :data:`CONTEXTS` contexts, one of two kinds (the encoder writes whichever stream is shorter):

- neighbour model: contexts from the rows above only, so a decoder fills a whole row at once:
  ``a`` the bit above, ``a2`` the bit two rows above, ``n`` whether the bit above-left or above-right is set,
  ``b = min(7, 8 * ones_above // i)`` the column's density so far in row ``i`` (0 in the first row);
  context = ``a + 2*a2 + 4*n + 8*b``. It wins on blocky masks; used for at most :data:`MAX_NEIGHBOUR_ROWS`
  listed rows.
- marginal model: every row and every column is put in one of ``R`` and ``C`` groups (1, 2, 4 or 8; the
  writer groups them by their number of kept elements, in equal-size groups), the groups are stored, and a
  bit's context is ``8 * row_group + column_group``. It wins on magnitude-pruned masks, which are close to
  random given how full each row and column is (measured on LeNet-5: docs/lep-format.md).

Stream layout (docs/lep-format.md, "Masks"):

- byte ``flags``: bit 0 = a row map follows, bit 1 = a column map follows, bit 2 = the mask is empty (then
  nothing else follows and the other bits are 0), bit 3 = marginal model; other bits 0. A map is written
  exactly when some row (column) is empty.
- row map: ``rows`` bits, MSB first, zero-padded to a byte, 1 = the row holds a kept element; then the
  column map likewise. Every listed row and column must hold at least one kept element.
- marginal model only: for the rows, then the columns: byte ``R`` (1..8, at most the number of listed rows);
  if ``R > 1``, uvarint ``L`` and ``L`` bytes: the group of each listed row as an ``ans`` symbol stream
  (:func:`lepton.compress.coding.encode_symbols`), every group below ``R``.
- byte ``q`` (1..16), the table precision; uvarint ``used``, the set of contexts that occur (bit c =
  context c, exactly those that occur); for each used context in increasing order, ``f`` in ``q + 1`` bits
  (MSB first, zero-padded to a byte): P(bit = 1) = ``f / 2**q``; ``f = 0`` or ``2**q`` means every bit of
  that context is 0 or 1 and none is coded.
- the rANS words (uint32 little-endian, last one nonzero, as :mod:`.ans`) of the other bits, row-major,
  with weights ``(2**24 - W, W)``, ``W = f * 2**(24 - q)``, for (0, 1); the coder must end empty.
"""

from __future__ import annotations

import constriction
import numpy as np

from lepton.compress.coding import decode_symbols, encode_symbols
from lepton.compress.coding.ans import PRECISION
from lepton.compress.coding.bits import Reader, pack_fixed, unpack_fixed, uvarint
from lepton.errors import ConfigError, FormatError

CONTEXTS = 64
MAX_TABLE_BITS = 16
MAX_GROUPS = 8  # row and column groups of the marginal model: 8 x 8 contexts
MAX_NEIGHBOUR_ROWS = 1 << 14  # the neighbour model decodes row by row: bounded, so no file makes that slow
_ROW_MAP, _COL_MAP, _EMPTY, _MARGINAL = 1, 2, 4, 8

__all__ = ["CONTEXTS", "decode_mask", "encode_mask", "mask_view"]


def mask_view(shape: list[int] | tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of the 2-D view of a tensor of ``shape``: the first axis against all others."""
    numel = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    rows = int(shape[0]) if len(shape) >= 2 and shape[0] > 0 else 1
    return rows, numel // rows


def _contexts(prev: np.ndarray, prev2: np.ndarray, ones_above: np.ndarray, i: int) -> np.ndarray:
    """Contexts of row ``i`` from the two rows above (zeros where absent) and the column counts above."""
    side = np.zeros_like(prev)
    side[1:] |= prev[:-1]
    side[:-1] |= prev[1:]
    density = np.minimum(7, (8 * ones_above) // i) if i else np.zeros_like(ones_above)
    return prev.astype(np.int64) + 2 * prev2 + 4 * side + 8 * density


def _all_contexts(sub: np.ndarray) -> np.ndarray:
    r, _ = sub.shape
    s = sub.astype(np.int64)
    prev = np.zeros_like(s)
    prev[1:] = s[:-1]
    prev2 = np.zeros_like(s)
    prev2[2:] = s[:-2]
    side = np.zeros_like(s)
    side[:, 1:] |= prev[:, :-1]
    side[:, :-1] |= prev[:, 1:]
    above = np.cumsum(s, axis=0) - s  # ones in rows < i
    i = np.arange(r, dtype=np.int64)[:, None]
    density = np.where(i > 0, np.minimum(7, (8 * above) // np.maximum(i, 1)), 0)
    return prev + 2 * prev2 + 4 * side + 8 * density


def _table(n: np.ndarray, ones: np.ndarray, q: int) -> np.ndarray:
    """Quantized P(1) * 2**q per context: 0 or 2**q only for contexts that are all 0 or all 1."""
    top = 1 << q
    f = np.clip(np.rint(ones * top / np.maximum(n, 1)).astype(np.int64), 1, top - 1)
    return np.where(ones == 0, 0, np.where(ones == n, top, f))


def _cost(n: np.ndarray, ones: np.ndarray, f: np.ndarray, q: int) -> float:
    p = f / (1 << q)
    coded = (f > 0) & (f < 1 << q)
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = -(ones * np.log2(p) + (n - ones) * np.log2(1 - p))
    return float(bits[coded].sum()) + len(n) * (q + 1)


def _weights(f: np.ndarray, q: int) -> np.ndarray:
    """Per-bit (W0 - 1, W1 - 1) float rows for constriction's ``Categorical(perfect=False)``, which then
    uses exactly the integer weights W0, W1 (see :mod:`.ans`)."""
    w1 = f.astype(np.int64) << (PRECISION - q)
    return np.stack([(1 << PRECISION) - w1 - 1, w1 - 1], axis=1).astype(np.float64)


_MODEL = constriction.stream.model.Categorical(perfect=False)


def _groups(counts: np.ndarray, n: int) -> np.ndarray:
    """Rows (or columns) split into ``n`` equal-size groups by their number of kept elements."""
    ranks = np.empty(len(counts), dtype=np.int64)
    ranks[np.argsort(counts, kind="stable")] = np.arange(len(counts))
    return ranks * n // len(counts)


def _coded_body(ctx: np.ndarray, bits: np.ndarray) -> bytes:
    """Table precision, used-context set, table and rANS words of ``bits`` under contexts ``ctx``."""
    n = np.bincount(ctx, minlength=CONTEXTS)
    ones = np.bincount(ctx, weights=bits, minlength=CONTEXTS).astype(np.int64)
    used = np.flatnonzero(n)
    q = min(range(1, MAX_TABLE_BITS + 1), key=lambda q: _cost(n[used], ones[used], _table(n[used], ones[used], q), q))
    f = np.zeros(CONTEXTS, dtype=np.int64)
    f[used] = _table(n[used], ones[used], q)
    out = bytes([q]) + uvarint(int(sum(1 << int(c) for c in used))) + pack_fixed(f[used], q + 1)
    fb = f[ctx]
    coded = (fb > 0) & (fb < 1 << q)
    if coded.any():
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(bits[coded].astype(np.int32), _MODEL, _weights(fb[coded], q))
        out += coder.get_compressed().astype("<u4").tobytes()
    return out


def _marginal_body(sub: np.ndarray, row_groups: int, col_groups: int) -> bytes:
    rg, cg = _groups(sub.sum(axis=1), row_groups), _groups(sub.sum(axis=0), col_groups)
    out = b""
    for groups, n in ((rg, row_groups), (cg, col_groups)):
        out += bytes([n])
        if n > 1:
            stream = encode_symbols(groups, "ans")
            out += uvarint(len(stream)) + stream
    ctx = (rg[:, None] * MAX_GROUPS + cg[None, :]).reshape(-1)
    return out + _coded_body(ctx, sub.reshape(-1))


def encode_mask(mask: np.ndarray) -> bytes:
    """The stream of a 2-D boolean ``mask`` (see the module docstring); :func:`decode_mask` inverts it.
    Both models are tried (the marginal one with 1, 2, 4 or 8 groups a side) and the shortest stream kept."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.bool_:
        raise ConfigError(f"encode_mask needs a 2-D bool array, got dtype {mask.dtype} with shape {mask.shape}.")
    if not mask.any():
        return bytes([_EMPTY])
    row_kept, col_kept = mask.any(axis=1), mask.any(axis=0)
    flags = (_ROW_MAP if not row_kept.all() else 0) | (_COL_MAP if not col_kept.all() else 0)
    maps = b""
    if flags & _ROW_MAP:
        maps += np.packbits(row_kept).tobytes()
    if flags & _COL_MAP:
        maps += np.packbits(col_kept).tobytes()
    sub = mask[row_kept][:, col_kept]
    r, c = sub.shape
    bodies = [(0, _coded_body(_all_contexts(sub).reshape(-1), sub.reshape(-1)))] if r <= MAX_NEIGHBOUR_ROWS else []
    sizes = [n for n in (1, 2, 4, MAX_GROUPS)]
    bodies += [(_MARGINAL, _marginal_body(sub, a, b)) for a in sizes if a <= r for b in sizes if b <= c]
    mode, body = min(bodies, key=lambda o: len(o[1]))
    return bytes([flags | mode]) + maps + body


def _read_map(reader: Reader, n: int, name: str) -> np.ndarray:
    data = reader.take((n + 7) // 8, name)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bits[n:].any():
        raise FormatError(f"{reader.what}: nonzero padding bits after the {name}; the data is corrupted.")
    return bits[:n].astype(bool)


def _read_groups(reader: Reader, count: int, name: str) -> tuple[np.ndarray, int]:
    n = reader.byte(f"number of {name} groups", MAX_GROUPS)
    if n < 1 or n > count:
        raise FormatError(f"{reader.what}: {n} {name} groups for {count} {name}s; the data is corrupted.")
    if n == 1:
        return np.zeros(count, dtype=np.int64), n
    size = reader.uvarint(f"{name} group stream length", reader.remaining())
    groups = decode_symbols(reader.take(size, f"{name} groups"), count, "ans", what=f"{reader.what}: {name} groups")
    if groups.max() >= n:
        raise FormatError(f"{reader.what}: {name} group {groups.max()} of {n}; the data is corrupted.")
    return groups, n


def _read_table(reader: Reader) -> tuple[np.ndarray, int]:
    """Per-context ``f`` (-1 for a context the table does not list) and the precision ``q``."""
    what = reader.what
    q = reader.byte("mask table precision", MAX_TABLE_BITS)
    if q < 1:
        raise FormatError(f"{what}: mask table precision 0, expected 1 to {MAX_TABLE_BITS}; the data is corrupted.")
    used_set = reader.uvarint("mask context set", (1 << CONTEXTS) - 1)
    used = np.array([i for i in range(CONTEXTS) if used_set >> i & 1], dtype=np.int64)
    if not used.size:
        raise FormatError(f"{what}: no mask context is used for a non-empty mask; the data is corrupted.")
    table = unpack_fixed(reader, len(used), q + 1, "mask table").astype(np.int64)
    if table.max() > 1 << q:
        raise FormatError(f"{what}: mask table entry {table.max()} is over 2**{q}; the data is corrupted.")
    f = np.full(CONTEXTS, -1, dtype=np.int64)
    f[used] = table
    return f, q


def _decode_bits(coder: constriction.stream.stack.AnsCoder, fb: np.ndarray, q: int, what: str) -> np.ndarray:
    if (fb < 0).any():
        raise FormatError(f"{what}: the mask meets a context the table does not list; the data is corrupted.")
    bits = fb == 1 << q
    coded = (fb > 0) & (fb < 1 << q)
    if coded.any():
        try:
            bits[coded] = coder.decode(_MODEL, _weights(fb[coded], q)).astype(bool)
        except (ValueError, RuntimeError) as e:
            raise FormatError(f"{what}: mask rANS data does not decode ({e}); the data is corrupted.") from e
    return bits


def decode_mask(data: bytes, rows: int, cols: int, *, what: str = "mask stream") -> np.ndarray:
    """The ``rows x cols`` bool mask written by :func:`encode_mask`; FormatError (naming ``what``) on a bad
    flag, map, group, table or word, on leftover bytes or words, and on a listed row or column left empty."""
    reader = Reader(data, what)
    flags = reader.byte("mask flags", _ROW_MAP | _COL_MAP | _EMPTY | _MARGINAL)
    if flags & _EMPTY:
        if flags != _EMPTY:
            raise FormatError(f"{what}: mask flags {flags} mark an empty mask together with maps; corrupted.")
        reader.finish()
        return np.zeros((rows, cols), dtype=bool)
    if rows * cols == 0:
        raise FormatError(f"{what}: a non-empty mask for a {rows}x{cols} view; the data is corrupted.")
    row_kept = _read_map(reader, rows, "row map") if flags & _ROW_MAP else np.ones(rows, dtype=bool)
    col_kept = _read_map(reader, cols, "column map") if flags & _COL_MAP else np.ones(cols, dtype=bool)
    r, c = int(row_kept.sum()), int(col_kept.sum())
    if (flags & _ROW_MAP and r == rows) or (flags & _COL_MAP and c == cols) or not (r and c):
        raise FormatError(
            f"{what}: {r} of {rows} rows and {c} of {cols} columns kept; a map is written only when some "
            "row or column is empty, and a non-empty mask keeps at least one of each. The data is corrupted."
        )
    if not flags & _MARGINAL and r > MAX_NEIGHBOUR_ROWS:
        raise FormatError(
            f"{what}: the neighbour model for {r} rows; it is used for at most {MAX_NEIGHBOUR_ROWS}. Corrupted."
        )
    if flags & _MARGINAL:
        rg, _ = _read_groups(reader, r, "row")
        cg, _ = _read_groups(reader, c, "column")
    f, q = _read_table(reader)
    body = reader.rest()
    if len(body) % 4:
        raise FormatError(f"{what}: mask rANS data is {len(body)} bytes, not whole 32-bit words; corrupted.")
    words = np.frombuffer(body, dtype="<u4").astype(np.uint32)
    if len(words) and words[-1] == 0:
        raise FormatError(f"{what}: mask rANS data ends in a zero word, which no encoder writes; corrupted.")
    coder = constriction.stream.stack.AnsCoder(words)
    if flags & _MARGINAL:
        ctx = rg[:, None] * MAX_GROUPS + cg[None, :]
        sub = _decode_bits(coder, f[ctx.reshape(-1)], q, what).reshape(r, c)
    else:
        sub = np.zeros((r, c), dtype=bool)
        prev, prev2, above = np.zeros(c, np.int64), np.zeros(c, np.int64), np.zeros(c, np.int64)
        ctx = np.zeros((r, c), dtype=np.int64)
        for i in range(r):
            ctx[i] = _contexts(prev, prev2, above, i)
            row = _decode_bits(coder, f[ctx[i]], q, f"{what} row {i}").astype(np.int64)
            sub[i] = row
            prev2, prev, above = prev, row, above + row
    if not coder.is_empty():
        raise FormatError(f"{what}: mask rANS data is left over after the last row; the data is corrupted.")
    if (
        not np.array_equal(np.flatnonzero(f >= 0), np.unique(ctx))
        or not sub.any(axis=1).all()
        or not sub.any(axis=0).all()
    ):
        raise FormatError(
            f"{what}: the decoded mask leaves a listed row or column empty or lists an unused context; corrupted."
        )
    mask = np.zeros((rows, cols), dtype=bool)
    mask[np.ix_(row_kept, col_kept)] = sub
    return mask
