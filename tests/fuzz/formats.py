"""Per format: the mutation kinds, how a case's mutant is built from a seed (checksums recomputed where the
kind is structured, so the edit reaches the parser), and the reader the contract covers.

A case is ``(format, seed, index)``: the kind is ``KINDS[format][index % len]``, ``j = index // len`` numbers
the cases of that kind (it picks the truncation length), and ``random.Random("format:seed:index")`` the rest.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from tests.fuzz.mutate import RAW_OPS, dumps, edit_json, forge_spec, raw_edit

KINDS: dict[str, tuple[str, ...]] = {
    "lep": (*RAW_OPS, "header", "header", "header", "spec", "stream", "stream", "header-text"),
    "lds": (*RAW_OPS, "index", "index", "index", "block", "block", "index-text"),
    "ckpt": (
        "sidecar-bitflip",
        "sidecar-token",
        "sidecar-delete",
        "sidecar-truncate",
        "sidecar",
        "sidecar",
        "spec",
        "spec",
        "tensor-bitflip",
        "tensor-truncate",
        "tensor-insert",
        "tensor-header",
        "tensor-header",
    ),
    "registry": (
        "manifest-bitflip",
        "manifest-token",
        "manifest-delete",
        "manifest-truncate",
        "manifest",
        "manifest",
        "manifest",
        "layout",
        "blob-bitflip",
    ),
    "circuit": ("bitflip", "token", "delete", "truncate", "insert", "json", "json", "json", "json"),
    "pt": (*RAW_OPS, "pickle", "pickle", "pickle", "pickle", "record", "record"),
    "safetensors": (*RAW_OPS, "header", "header", "header", "header"),
}
SELFTEST = ("ok", "refused", "unexpected", "hang", "memory", "code-ran", "die")
"""Behaviours of the ``selftest`` format, which checks the harness's own classification."""


def case_kind(fmt: str, index: int) -> tuple[str, int]:
    """(mutation kind, number of earlier cases of that kind) for case ``index`` of ``fmt``."""
    kinds = SELFTEST if fmt == "selftest" else KINDS[fmt]
    return kinds[index % len(kinds)], index // len(kinds)


# ---- .lep ------------------------------------------------------------------------------------------------


def split_lep(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(header JSON object, payload) of valid `.lep` bytes."""
    from lepton.compress.container import PREAMBLE, inflate_header

    n = PREAMBLE.unpack_from(data)[2]
    return json.loads(inflate_header(data[PREAMBLE.size : PREAMBLE.size + n])), data[PREAMBLE.size + n :]


def pack_lep(text: bytes, payload: bytes, version: int) -> bytes:
    """`.lep` bytes with header JSON ``text`` deflated and its length and CRC in the preamble (format ``version``,
    the seed's own: a version-3 seed, one with mask-coded positions, stays version 3)."""
    from lepton.compress.container import MAGIC, PREAMBLE, deflate_header

    stored = deflate_header(text)
    return PREAMBLE.pack(MAGIC, version, len(stored), zlib.crc32(stored)) + stored + payload


def _edit_stream(header: dict[str, Any], payload: bytes, version: int, rng: random.Random, j: int) -> tuple[bytes, str]:
    """Raw-edit one payload stream; its length and every later offset are fixed in the header, and its CRC
    (versions 1-3) or the payload's (version 4, whose offsets are implied by the lengths)."""
    streams = [s for t in header["tensors"] for s in t["streams"]]
    starts = [sum(s["length"] for s in streams[:i]) for i in range(len(streams))]
    i = rng.choice([i for i, s in enumerate(streams) if s["length"]] or list(range(len(streams))))
    target, start = streams[i], starts[i]
    old = payload[start : start + target["length"]]
    new, note = raw_edit(rng.choice(RAW_OPS), old, rng, j)
    shift = len(new) - len(old)
    payload = payload[:start] + new + payload[start + len(old) :]
    target["length"] = len(new)
    if "payload_crc32" in header:
        header["payload_crc32"] = zlib.crc32(payload)
    else:
        for s in streams:
            if s["offset"] > start:
                s["offset"] += shift
        target["crc32"] = zlib.crc32(new)
    text = dumps(header, separators=(",", ":")).encode()
    return pack_lep(text, payload, version), f"stream {target['role']}: {note}"


def mutate_lep(data: bytes, kind: str, rng: random.Random, j: int) -> tuple[bytes, str]:
    if kind in RAW_OPS:
        return raw_edit(kind, data, rng, j)
    from lepton.compress.container import PREAMBLE

    header, payload = split_lep(data)
    version = PREAMBLE.unpack_from(data)[1]
    if kind == "stream":
        return _edit_stream(header, payload, version, rng, j)
    if kind == "spec":
        header["model"], note = forge_spec(header["model"], rng)
        text = dumps(header)
    elif kind == "header-text":
        text, note = raw_edit(rng.choice((*RAW_OPS, "token")), dumps(header).encode(), rng, j)
        return pack_lep(text, payload, version), f"header text {note}"
    else:
        text, note = edit_json(header, rng)
    return pack_lep(text.encode("utf-8", "surrogatepass"), payload, version), note


# ---- .lds ------------------------------------------------------------------------------------------------


def split_lds(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """(header + blocks, index JSON object) of valid `.lds` bytes."""
    from lepton.data.store.format import FOOTER

    offset, length, _, _ = FOOTER.unpack(data[-FOOTER.size :])
    return data[:offset], json.loads(data[offset : offset + length])


def pack_lds(body: bytes, index: bytes) -> bytes:
    """`.lds` bytes with ``index`` after ``body`` and a footer holding its extent and SHA-256."""
    from lepton.data.store.format import END_MAGIC, FOOTER

    return body + index + FOOTER.pack(len(body), len(index), hashlib.sha256(index).digest(), END_MAGIC)


def _extents(index: dict[str, Any]) -> list[list[int]]:
    """Every [offset, length, crc32] list of the index: block streams, learned models and arrays."""
    out = [e for split in index["splits"].values() for block in split["blocks"] for e in block.values()]
    out += [f["model"] for split in index["splits"].values() for f in split["fields"].values() if "model" in f]
    return out + [a["block"] for a in index["arrays"].values()]


def _edit_block(body: bytes, index: dict[str, Any], rng: random.Random, j: int) -> tuple[bytes, str]:
    """Raw-edit one block (or model, or array); its length, CRC and every later offset are fixed in the index."""
    extents = _extents(index)
    target = rng.choice(extents)
    offset, length, _ = target
    old = body[offset : offset + length]
    new, note = raw_edit(rng.choice(RAW_OPS), old, rng, j)
    for e in extents:
        if e[0] > offset:
            e[0] += len(new) - len(old)
    target[1:] = [len(new), zlib.crc32(new)]
    body = body[:offset] + new + body[offset + length :]
    return pack_lds(body, json.dumps(index, separators=(",", ":")).encode()), f"block at {offset}: {note}"


def mutate_lds(data: bytes, kind: str, rng: random.Random, j: int) -> tuple[bytes, str]:
    if kind in RAW_OPS:
        return raw_edit(kind, data, rng, j)
    body, index = split_lds(data)
    if kind == "block":
        return _edit_block(body, index, rng, j)
    if kind == "index-text":
        text, note = raw_edit(rng.choice((*RAW_OPS, "token")), json.dumps(index).encode(), rng, j)
        return pack_lds(body, text), f"index text {note}"
    text, note = edit_json(index, rng)
    return pack_lds(body, text.encode("utf-8", "surrogatepass")), note


# ---- checkpoints -----------------------------------------------------------------------------------------


def split_safetensors(data: bytes) -> tuple[dict[str, Any], bytes]:
    n = struct.unpack_from("<Q", data)[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def mutate_ckpt(stem: Path, kind: str, rng: random.Random, j: int, dest: Path) -> tuple[Path, str]:
    """Copy the checkpoint ``stem`` to ``dest/ckpt.*`` and mutate it; tensor-file edits update the sidecar's
    sha256 so that they reach the safetensors reader."""
    tensor, sidecar = stem.with_suffix(".safetensors").read_bytes(), stem.with_suffix(".json").read_text()
    meta = json.loads(sidecar)
    target, _, op = kind.partition("-")
    if kind.startswith("sidecar-"):
        text, note = raw_edit(op, sidecar.encode(), rng, j)
        sidecar_bytes = text
    elif kind in ("sidecar", "spec"):
        if kind == "spec":
            meta["model"], note = forge_spec(meta["model"], rng)
            text = dumps(meta, indent=1)
        else:
            text, note = edit_json(meta, rng)
        sidecar_bytes = text.encode("utf-8", "surrogatepass")
    else:
        if kind == "tensor-header":
            header, body = split_safetensors(tensor)
            text, note = edit_json(header, rng)
            raw = text.encode("utf-8", "surrogatepass")
            tensor = struct.pack("<Q", len(raw)) + raw + body
        else:
            tensor, note = raw_edit(op, tensor, rng, j)
        meta["sha256"] = hashlib.sha256(tensor).hexdigest()
        sidecar_bytes = json.dumps(meta, indent=1, sort_keys=True).encode()
    (dest / "ckpt.safetensors").write_bytes(tensor)
    (dest / "ckpt.json").write_bytes(sidecar_bytes)
    return dest / "ckpt.safetensors", f"{target}: {note}"


# ---- registry --------------------------------------------------------------------------------------------


def _layout_edit(root: Path, rng: random.Random) -> str:
    """A change to the registry's folders rather than a manifest's bytes."""
    manifests = sorted(root.glob("models/*/*/manifest.json"))
    m = rng.choice(manifests)
    how = rng.choice(("move", "empty-version", "link-out", "dir-as-manifest", "drop-blob", "swap"))
    if how == "move":
        m.parent.rename(m.parent.with_name("9"))
    elif how == "empty-version":
        (m.parent.parent / "7").mkdir()
    elif how == "link-out":
        outside = root.parent / "outside.json"
        outside.write_text(m.read_text())
        m.unlink()
        m.symlink_to(outside)
    elif how == "dir-as-manifest":
        m.unlink()
        m.mkdir()
    elif how == "drop-blob":
        rng.choice(sorted(root.glob("blobs/sha256/*"))).unlink()
    else:
        other = rng.choice(manifests)
        text = m.read_text()
        m.write_text(other.read_text())
        other.write_text(text)
    return f"layout {how} {m.relative_to(root)}"


def mutate_registry(seed: Path, kind: str, rng: random.Random, j: int, dest: Path) -> tuple[Path, str]:
    root = dest / "registry"
    shutil.copytree(seed, root, symlinks=True)
    if kind == "layout":
        return root, _layout_edit(root, rng)
    if kind == "blob-bitflip":
        blob = rng.choice(sorted(root.glob("blobs/sha256/*")))
        data, note = raw_edit("bitflip", blob.read_bytes(), rng, j)
        blob.write_bytes(data)
        return root, f"blob {note}"
    m = rng.choice(sorted(root.glob("models/*/*/manifest.json")))
    if kind == "manifest":
        text, note = edit_json(json.loads(m.read_text()), rng)
        data = text.encode("utf-8", "surrogatepass")
    else:
        data, note = raw_edit(kind.partition("-")[2], m.read_bytes(), rng, j)
    m.write_bytes(data)
    return root, f"{m.relative_to(root)}: {note}"


# ---- circuits --------------------------------------------------------------------------------------------


def mutate_circuit(data: bytes, kind: str, rng: random.Random, j: int) -> tuple[bytes, str]:
    if kind == "json":
        text, note = edit_json(json.loads(data), rng)
        return text.encode("utf-8", "surrogatepass"), note
    return raw_edit(kind, data, rng, j)


# ---- plain weight files (.pt zip, .safetensors) ----------------------------------------------------------


def mutate_pt(data: bytes, kind: str, rng: random.Random, j: int) -> tuple[bytes, str]:
    """A raw edit of the zip, or (re-zipped with fresh CRCs, so the edit reaches the reader) of its pickle or
    of one tensor record."""
    import io
    import zipfile

    if kind in RAW_OPS:
        return raw_edit(kind, data, rng, j)
    src = zipfile.ZipFile(io.BytesIO(data))
    names = src.namelist()
    pick = "/data.pkl" if kind == "pickle" else "/data/"
    target = rng.choice([n for n in names if pick in n])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in names:
            body = src.read(name)
            if name == target:
                body, note = raw_edit(
                    rng.choice(("bitflip", "insert", "delete", "overwrite", "truncate")), body, rng, j
                )
            dst.writestr(name, body)
    return out.getvalue(), f"{target}: {note}"


def mutate_safetensors(data: bytes, kind: str, rng: random.Random, j: int) -> tuple[bytes, str]:
    """A raw edit, or a structural edit of the JSON header with the header length recomputed."""
    if kind in RAW_OPS:
        return raw_edit(kind, data, rng, j)
    (n,) = struct.unpack_from("<Q", data)
    text, note = edit_json(json.loads(data[8 : 8 + n]), rng)
    header = text.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(header)) + header + data[8 + n :], note


# ---- one case --------------------------------------------------------------------------------------------


def build_case(fmt: str, seed: int, index: int, seeds: dict[str, list[Path]], dest: Path) -> tuple[Path, str]:
    """Write case ``fmt:seed:index``'s mutant under ``dest``; returns the path to read and a description."""
    kind, j = case_kind(fmt, index)
    rng = random.Random(f"{fmt}:{seed}:{index}")
    if fmt == "selftest":
        return dest, kind
    files = seeds[fmt]
    source = files[j % len(files)] if kind.endswith("truncate") else rng.choice(files)
    j //= len(files) if kind.endswith("truncate") else 1
    if fmt == "ckpt":
        path, note = mutate_ckpt(source.with_suffix(""), kind, rng, j, dest)
    elif fmt == "registry":
        path, note = mutate_registry(source, kind, rng, j, dest)
    else:
        mutate = {
            "lep": mutate_lep,
            "lds": mutate_lds,
            "circuit": mutate_circuit,
            "pt": mutate_pt,
            "safetensors": mutate_safetensors,
        }[fmt]
        data, note = mutate(source.read_bytes(), kind, rng, j)
        path = dest / f"case{source.suffix}"
        path.write_bytes(data)
    return path, f"{kind} of {source.name}: {note}"


# ---- readers ---------------------------------------------------------------------------------------------


def read_lep(path: Path) -> None:
    from lepton.artifacts import load_model_file
    from lepton.compress.container import load_lep

    load_lep(path)
    load_model_file(path)


def read_lds(path: Path) -> None:
    from lepton.data.store import Store, verify_store

    with Store(path, threads=1) as store:
        for name, info in store.splits.items():
            for field in info.fields:
                store.read_field(name, field)
                store.take(name, field, np.array([0, info.samples - 1]) if info.samples else np.array([], int))
        for name in store.arrays:
            store.read_array(name)
    verify_store(path, threads=1)


def read_ckpt(path: Path) -> None:
    """Load, build the model, and restore the optimizer as ``fit(resume=True)`` does."""
    import torch

    from lepton.artifacts import load_model_file
    from lepton.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    model = load_model_file(path).model
    if ckpt.optimizer_state is not None:
        groups = ckpt.optimizer_state.get("param_groups")
        adam = isinstance(groups, list) and groups and isinstance(groups[0], dict) and "betas" in groups[0]
        make = torch.optim.Adam if adam else torch.optim.SGD
        ckpt.restore_optimizer(make(model.parameters(), lr=0.1))


def read_registry(root: Path) -> None:
    from lepton.edge.registry import Registry

    reg = Registry(root)
    for name in reg.names():
        for version in reg.versions(name):
            reg.manifest(name, version)
        reg.pull(name, None, root.parent / "pulled")


class InvalidOutput(Exception):
    """A reader accepted a file and produced something invalid from it (e.g. ``nan`` angles in QASM)."""


def read_circuit(path: Path) -> None:
    """Load and export to OpenQASM 2 and 3; exported text must hold finite angles only."""
    from lepton.quantum.circuit_file import load_circuit
    from lepton.quantum.qasm import to_qasm

    tc = load_circuit(path)
    inputs = tc.sample_inputs if tc.sample_inputs is not None else [0.0] * tc.circuit.n_inputs
    for version in (2, 3):
        text = to_qasm(tc.circuit, tc.weights, inputs, version=version)
        if "nan" in text or "inf" in text:
            raise InvalidOutput(
                f"OpenQASM {version} export of an accepted file has non-finite angles: "
                f"{[line for line in text.splitlines() if 'nan' in line or 'inf' in line][:1]}"
            )


def read_weight_file(path: Path) -> None:
    """Read a plain state dict and use every tensor it yields (a bad view would fault here)."""
    from lepton.models.weights import read_weights

    for t in read_weights(path).values():
        t.float().sum()


def read_selftest(behaviour: str) -> None:
    """What each ``selftest`` case does, to check that the harness classifies it right."""
    import os
    import time

    from lepton.errors import FormatError
    from tests.fuzz.mutate import MARKER

    if behaviour == "refused":
        raise FormatError("selftest refusal")
    if behaviour == "unexpected":
        raise KeyError("selftest")
    if behaviour == "hang":
        time.sleep(3600)
    if behaviour == "memory":
        bytearray(1 << 40)
    if behaviour == "code-ran":
        Path(MARKER).touch()
    if behaviour == "die":
        os._exit(3)


READERS = {
    "lep": read_lep,
    "lds": read_lds,
    "ckpt": read_ckpt,
    "registry": read_registry,
    "circuit": read_circuit,
    "pt": read_weight_file,
    "safetensors": read_weight_file,
}


def read_case(fmt: str, path: Path, note: str) -> None:
    if fmt == "selftest":
        read_selftest(note)
    else:
        READERS[fmt](path)
