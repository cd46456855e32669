"""Deterministic mutations: raw byte edits, and structured JSON edits that can plant tokens ``json.dumps``
never writes (``1e999``, ``NaN``, deep nesting, duplicate keys) and forged model specs.

Every function takes a ``random.Random`` so that a case id (format, seed, index) rebuilds the same mutant.
"""

from __future__ import annotations

import copy
import json
import math
import random
import struct
from dataclasses import dataclass
from typing import Any

MARKER = "LEPTON_FUZZ_MARKER"
"""The file the forged model specs try to create in the worker's folder: if it appears, code ran."""

RAW_OPS = ("bitflip", "insert", "delete", "truncate", "overwrite")
JSON_TOKENS = (
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b",",
    b":",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"null",
    b"true",
    b"-",
    b"0",
    b"\\",
    b"\\u",
    b"\xff",
    b"\x00",
    b" " * 64,
)


@dataclass(frozen=True)
class Raw:
    """A JSON value written as this exact text (for what ``json.dumps`` refuses or normalises)."""

    text: str


@dataclass(frozen=True)
class DupKey:
    """A dict key written as ``key`` again: the object then holds the key twice."""

    key: str


RAW_TOKENS = (
    "1e999",
    "-1e999",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e-400",
    "-0",
    "1E400",
    "9" * 5000,
    "18446744073709551616",
    "-9223372036854775809",
    '"\\ud800"',
    '"\\u0000"',
    "[" * 20000 + "]" * 20000,
    '{"a":' * 20000 + "0" + "}" * 20000,
    "[1e999, NaN, -Infinity]",
)
VALUES: tuple[Any, ...] = (
    -1,
    0,
    1,
    2,
    3,
    255,
    256,
    65536,
    2**31 - 1,
    2**31,
    2**32,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    10**30,
    -(2**63),
    0.5,
    -0.0,
    1.5,
    1e308,
    -1e308,
    True,
    False,
    None,
    "",
    "x",
    "A" * 100_000,
    "../../etc/passwd",
    "lenet5",
    "float32",
    "zstd",
    "lepton-cm",
    [],
    {},
    [1],
    [0, 0],
    [-1],
    {"a": 1},
    [[[]]],
    [0] * 100_000,
)
NUMBER_EDITS = (
    lambda n: n + 1,
    lambda n: n - 1,
    lambda n: -n,
    lambda n: n * 2,
    lambda n: n * 10**6,
    lambda n: n // 2,
    lambda n: 2**31,
    lambda n: 2**32 - 1,
    lambda n: 2**63,
    lambda n: 0,
    lambda n: float(n) + 0.5,
)

_SPEC_EDITS: tuple[dict[str, Any], ...] = (
    {"name": "os:system", "kwargs": {"command": f"touch {MARKER}"}},
    {"name": "subprocess:getoutput", "kwargs": {"cmd": f"touch {MARKER}"}},
    {"name": "subprocess:check_output", "kwargs": {"args": ["touch", MARKER]}},
    {"name": "os:makedirs", "kwargs": {"name": MARKER}},
    {"name": "builtins:eval", "kwargs": {"source": f"__import__('os').system('touch {MARKER}')"}},
    {"name": "builtins:exec", "kwargs": {}},
    {"name": "sys:exit", "kwargs": {}},
    {"name": "torch.nn:Linear", "kwargs": {"in_features": 10**6, "out_features": 10**6}},
    {"name": "no_such_module_xyz:factory"},
    {"name": "lenet6"},
    {"name": ""},
    {"name": ":"},
    {"name": "os:"},
    {"name": "os:path"},
    {"name": 5},
    {"name": None},
    {"name": ["lenet5"]},
    {"input_shape": [1, 1400, 1400]},
    {"input_shape": [0, 28, 28]},
    {"input_shape": [1, 28, 27]},
    {"input_shape": [10**9, 28, 28]},
    {"input_shape": [1, 10**6, 10**6]},
    {"input_shape": [-1, 8, 8]},
    {"input_shape": [1, 8]},
    {"input_shape": [1, 8, 8, 1]},
    {"input_shape": ["1", "8", "8"]},
    {"input_shape": [1.5, 8, 8]},
    {"input_shape": 8},
    {"input_shape": None},
    {"input_shape": [1, Raw("NaN"), 8]},
    {"input_shape": [1, Raw("1e999"), 8]},
    {"num_classes": -1},
    {"num_classes": 0},
    {"num_classes": 1e12},
    {"num_classes": 10**12},
    {"num_classes": "10"},
    {"num_classes": None},
    {"num_classes": 2.5},
    {"num_classes": Raw("1e999")},
    {"num_classes": Raw("NaN")},
    {"kwargs": {"fc1": 10**9}},
    {"kwargs": {"fc1": 10**5, "fc2": 10**5}},
    {"kwargs": {"fc1": -5}},
    {"kwargs": {"fc1": 0}},
    {"kwargs": {"fc1": "300"}},
    {"kwargs": {"bogus": 1}},
    {"kwargs": {"conv1": 10**6}},
    {"kwargs": [1, 2]},
    {"kwargs": "x"},
    {"kwargs": {"in_channels": 3}},
    {"kwargs": {"fc1": Raw("1e999")}},
    {"tt": {"fc1": {"in_modes": [2**20] * 16, "out_modes": [2**20] * 16, "ranks": [4096] * 15}}},
    {"tt": {"fc1": {"in_modes": [8, 8], "out_modes": [20, 15], "ranks": [4]}}},
    {"tt": {"fc9": {"in_modes": [8, 8], "out_modes": [20, 15], "ranks": [4]}}},
    {"tt": {"fc1": {"in_modes": [], "out_modes": [], "ranks": []}}},
    {"tt": "x"},
    {"tt": [1]},
    {"tt": {"fc1": {"in_modes": [Raw("1e999"), 8], "out_modes": [20, 15], "ranks": [4]}}},
    {"normalize": {"mean": [0.5, 0.5], "std": [0.2, 0.2]}},
    {"normalize": {"mean": [Raw("NaN")], "std": [0.2]}},
    {"normalize": {"mean": [0.5], "std": [0]}},
    {"normalize": {"mean": [0.5], "std": [-1e-300]}},
    {"normalize": {"mean": [0.5], "std": [Raw("1e999")]}},
    {"normalize": {"mean": [1e308], "std": [1e-308]}},
    {"normalize": {"mean": "0.5", "std": [0.2]}},
    {"normalize": [[0.5], [0.2], [0.1]]},
    {"normalize": "imagenet"},
)


# ---- raw byte edits ------------------------------------------------------------------------------------------


def truncate_length(j: int, size: int) -> int:
    """The ``j``-th truncation length of a ``size``-byte file: a golden-ratio stride through ``0..size-1``, so
    the first ``size`` truncation cases cut at every length and any fewer are spread evenly over the file."""
    if size <= 1:
        return 0
    stride = max(1, round(size * 0.6180339887))
    while math.gcd(stride, size) != 1:
        stride += 1
    return (j * stride) % size


def raw_edit(op: str, data: bytes, rng: random.Random, j: int) -> tuple[bytes, str]:
    """``data`` after one raw edit ``op`` (one of :data:`RAW_OPS` or ``token``), and a description."""
    size = len(data)
    pos = rng.randrange(size + 1)
    if op == "truncate":
        cut = truncate_length(j, size)
        return data[:cut], f"truncate to {cut}"
    if op == "bitflip":
        out = bytearray(data)
        flips = [rng.randrange(8 * size) for _ in range(rng.choice((1, 1, 2, 3, 8)))] if size else []
        for bit in flips:
            out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out), f"flip bits {flips}"
    if op == "insert":
        blob = rng.choice(
            (
                bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))),
                b"\x00" * 8,
                b"\xff" * 8,
                rng.choice(JSON_TOKENS),
            )
        )
        return data[:pos] + blob + data[pos:], f"insert {blob[:16]!r} at {pos}"
    if op == "token":
        blob = rng.choice(JSON_TOKENS)
        drop = rng.choice((0, 0, 1, 2))
        return data[:pos] + blob + data[pos + drop :], f"token {blob!r} at {pos} over {drop}"
    if op == "delete":
        n = rng.choice((1, 1, 2, 4, 16, max(1, size // 4)))
        return data[:pos] + data[pos + n :], f"delete {n} at {pos}"
    if op == "overwrite":
        word = rng.choice(
            (
                struct.pack("<I", rng.choice((0, 1, 2**31, 2**32 - 1))),
                struct.pack("<Q", rng.choice((0, 2**63, 2**64 - 1, 1 << 40))),
                b"\x00",
                b"\xff",
            )
        )
        pos = min(pos, max(0, size - len(word)))
        return data[:pos] + word + data[pos + len(word) :], f"overwrite {word!r} at {pos}"
    raise ValueError(f"unknown raw op {op!r}")


# ---- JSON documents with planted tokens ----------------------------------------------------------------------


def dumps(doc: Any, **options: Any) -> str:
    """``json.dumps(doc)`` where :class:`Raw` values and :class:`DupKey` keys are written as their text."""
    texts: dict[str, str] = {}

    def plant(text: str) -> str:
        sentinel = f"\x01PLANT{len(texts)}\x01"
        texts[json.dumps(sentinel)] = text
        return sentinel

    def prepare(x: Any) -> Any:
        if isinstance(x, Raw):
            return plant(x.text)
        if isinstance(x, dict):
            return {(plant(json.dumps(k.key)) if isinstance(k, DupKey) else k): prepare(v) for k, v in x.items()}
        if isinstance(x, list):
            return [prepare(v) for v in x]
        return x

    text = json.dumps(prepare(doc), allow_nan=True, **options)
    for sentinel, raw in texts.items():
        text = text.replace(sentinel, raw)
    return text


def _nodes(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) pair under ``doc``: the places a value can be replaced or deleted."""
    out, stack = [], [doc]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if not isinstance(key, DupKey):
                out.append((node, key))
                stack.append(value)
    return out


def _containers(doc: Any, kind: type) -> list[Any]:
    found = [doc] if isinstance(doc, kind) else []
    return found + [c[k] for c, k in _nodes(doc) if isinstance(c[k], kind)]


def _edit_once(doc: Any, rng: random.Random) -> tuple[Any, str]:
    """One random structural edit of ``doc`` (changed in place where possible); returns the new document."""
    nodes = _nodes(doc)
    op = rng.choice(
        (
            "value",
            "value",
            "raw",
            "number",
            "number",
            "splice",
            "delete",
            "extra-key",
            "dup-key",
            "rename-key",
            "list",
            "string",
            "root",
        )
    )
    if op == "root" or not nodes:
        new = rng.choice((Raw(rng.choice(RAW_TOKENS)), [], None, "x", [doc], {"doc": doc}))
        return new, f"root -> {type(new).__name__}"
    parent, key = rng.choice(nodes)
    old = parent[key]
    if op == "number":
        numbers = [(c, k) for c, k in nodes if type(c[k]) in (int, float)]
        if numbers:
            parent, key = rng.choice(numbers)
            parent[key] = new = rng.choice(NUMBER_EDITS)(parent[key])
            return doc, f"number {key!r} -> {new!r}"[:200]
        op = "value"
    if op == "value":
        parent[key] = copy.deepcopy(rng.choice(VALUES))
        return doc, f"value {key!r} -> {str(parent[key])[:40]}"
    if op == "raw":
        parent[key] = Raw(rng.choice(RAW_TOKENS))
        return doc, f"raw {key!r} -> {parent[key].text[:40]}"
    if op == "splice":
        c, k = rng.choice(nodes)
        parent[key] = copy.deepcopy(c[k])
        return doc, f"splice {k!r} into {key!r}"
    if op == "delete":
        del parent[key]
        return doc, f"delete {key!r}"
    if op == "string":
        strings = [(c, k) for c, k in nodes if isinstance(c[k], str)] or [(parent, key)]
        parent, key = rng.choice(strings)
        text = str(parent[key])[:100]  # bounded: the mutant, not its builder, should test the reader's limits
        parent[key] = rng.choice((text * 1000, "", text + "\u00e9", Raw('"\\udfff"'), text[:-1], "x" * 5_000_000))
        return doc, f"string {key!r}"
    if op == "list":
        lists = _containers(doc, list) or [[old]]
        target = rng.choice(lists)
        how = rng.choice(("dup", "drop", "reverse", "append", "clear", "grow"))
        if how == "dup" and target:
            target.insert(rng.randrange(len(target)), copy.deepcopy(rng.choice(target)))
        elif how == "drop" and target:
            del target[rng.randrange(len(target))]
        elif how == "reverse":
            target.reverse()
        elif how == "append":
            target.append(copy.deepcopy(rng.choice(VALUES)))
        elif how == "clear":
            target.clear()
        else:
            target.extend([0] * 10_000)
        return doc, f"list {how}"
    dicts = _containers(doc, dict)
    if not dicts:
        return doc, "no dict"
    target = rng.choice(dicts)
    keys = [k for k in target if not isinstance(k, DupKey)]
    if op == "dup-key" and keys:
        k = rng.choice(keys)
        target[DupKey(k)] = copy.deepcopy(rng.choice(VALUES + (target[k],)))
        return doc, f"duplicate key {k!r}"
    if op == "rename-key" and keys:
        k = rng.choice(keys)
        new_key = rng.choice(
            (
                k + "x",
                k[:-1],
                k.upper(),
                "",
                k.replace(".", "..", 1),
                k.split(".")[0],
                rng.choice(keys),
                "model.x",
                "optim.x.y",
                "optim.0",
                "__metadata__",
            )
        )
        target[new_key] = target.pop(k)
        return doc, f"rename key {k!r} -> {new_key!r}"
    extra = rng.choice(("extra", "__proto__", "tt", "kwargs", "model", "sha256", "format", "A" * 1000))
    target[extra] = copy.deepcopy(rng.choice(VALUES))
    return doc, f"extra key {extra!r}"


def edit_json(doc: Any, rng: random.Random) -> tuple[str, str]:
    """``doc`` (not changed) after 1-3 random structural edits, as JSON text, and a description."""
    doc = copy.deepcopy(doc)
    notes = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        doc, note = _edit_once(doc, rng)
        notes.append(note)
    return dumps(doc), "; ".join(notes)


def forge_spec(spec: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
    """``spec`` (a model spec dict) with one or two forged fields from :data:`_SPEC_EDITS` laid over it."""
    edits = [rng.choice(_SPEC_EDITS) for _ in range(rng.choice((1, 1, 1, 2)))]
    out = copy.deepcopy(spec)
    for edit in edits:
        out.update(copy.deepcopy(edit))
    return out, "spec " + " + ".join(dumps(e)[:80] for e in edits)
