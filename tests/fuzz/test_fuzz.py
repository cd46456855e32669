"""A bounded fuzz run of every reader (the full one is ``make fuzz``), the harness's own classification, and
checks that the structured mutations really change the files and still pass their checksums."""

import hashlib
import json
import struct
import zlib
from pathlib import Path

import pytest

from tests.fuzz.formats import KINDS, SELFTEST, build_case
from tests.fuzz.harness import BAD, case_ids, run_cases
from tests.fuzz.mutate import RAW_OPS, DupKey, Raw, dumps, raw_edit, truncate_length
from tests.fuzz.seeds import write_seeds

BOUNDED = {"lep": 120, "lds": 80, "ckpt": 50, "registry": 40, "circuit": 40, "pt": 40, "safetensors": 40}
SAMPLES = 6  # cases built per structured kind in the targeted tests


@pytest.fixture(scope="module")
def report():
    """One pool run for the whole module: the bounded cases plus one case of each selftest behaviour."""
    return run_cases(case_ids(BOUNDED, 0) + [f"selftest:0:{i}" for i in range(len(SELFTEST))])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return write_seeds(tmp_path_factory.mktemp("seeds"))


@pytest.mark.slow
def test_bounded_fuzz_run_has_no_failures(report):
    results = [r for r in report.results if not r["id"].startswith("selftest")]
    assert len(results) == sum(BOUNDED.values())
    bad = [r for r in results if r["outcome"] in BAD]
    assert not bad, "\n" + report.summary()


@pytest.mark.slow  # shares the bounded run's worker pool (~30 s)
def test_harness_classifies_every_outcome(report):
    got = {r["id"]: r["outcome"] for r in report.results if r["id"].startswith("selftest")}
    expected = {f"selftest:0:{i}": b for i, b in enumerate(SELFTEST)}
    expected["selftest:0:6"] = "memory"  # a worker that dies counts as memory (the kernel's OOM kill looks alike)
    assert got == expected


def _cases(fmt, kind, tmp_path, seeds):
    """``SAMPLES`` built cases of ``kind``: (path, note) each."""
    kinds = KINDS[fmt]
    out = []
    for k in range(SAMPLES):
        index = kinds.index(kind) + k * len(kinds)
        dest = tmp_path / f"{fmt}-{index}"
        dest.mkdir()
        out.append(build_case(fmt, 0, index, seeds, dest))
    return out


def test_raw_ops_change_the_bytes():
    data = bytes(range(256)) * 4
    rng = __import__("random").Random(0)
    for op in RAW_OPS:
        changed = [raw_edit(op, data, rng, j)[0] != data for j in range(1, 20)]
        assert sum(changed) >= 17, op
    assert len(raw_edit("insert", data, rng, 0)[0]) > len(data)
    assert len(raw_edit("delete", data, rng, 0)[0]) < len(data)


@pytest.mark.parametrize("size", [1, 2, 7, 100, 339, 4462])
def test_truncation_cuts_at_every_length(size):
    assert {truncate_length(j, size) for j in range(size)} == set(range(size))


def test_planted_tokens_and_duplicate_keys():
    assert dumps({"a": Raw("1e999"), DupKey("a"): [Raw("NaN")]}) == '{"a": 1e999, "a": [NaN]}'


def _lep_parts(data):
    _, _, n, crc = struct.unpack_from("<8sIQI", data)
    stored = data[24 : 24 + n]
    assert zlib.crc32(stored) == crc and len(data) >= 24 + n
    d = zlib.decompressobj(-15)
    return d.decompress(stored), data[24 + n :]


@pytest.mark.parametrize("kind", ["header", "spec", "stream", "header-text"])
def test_lep_structured_edits_pass_the_header_crc(kind, tmp_path, seeds):
    originals = {_lep_parts(p.read_bytes())[0] for p in seeds["lep"]}
    for path, note in _cases("lep", kind, tmp_path, seeds):
        text, payload = _lep_parts(path.read_bytes())
        if kind == "stream":  # the header's lengths, offsets and CRCs (v4: the payload's) describe the edit
            header = json.loads(text)
            streams = [s for t in header["tensors"] for s in t["streams"]]
            assert sum(s["length"] for s in streams) == len(payload), note
            if "payload_crc32" in header:
                assert zlib.crc32(payload) == header["payload_crc32"], note
            else:
                assert all(zlib.crc32(payload[s["offset"] : s["offset"] + s["length"]]) == s["crc32"] for s in streams)
            assert path.read_bytes() not in {p.read_bytes() for p in seeds["lep"]}, note
        else:
            assert text not in originals, note


def _lds_index(data):
    offset, length, digest, end = struct.unpack("<QQ32s8s", data[-56:])
    index = data[offset : offset + length]
    assert end == b"LDSINDEX" and hashlib.sha256(index).digest() == digest and offset + length == len(data) - 56
    return index


@pytest.mark.parametrize("kind", ["index", "index-text", "block"])
def test_lds_structured_edits_pass_the_index_sha256(kind, tmp_path, seeds):
    original = seeds["lds"][0].read_bytes()
    for path, note in _cases("lds", kind, tmp_path, seeds):
        data = path.read_bytes()
        index = _lds_index(data)
        assert data != original, note
        if kind == "block":
            ix = json.loads(index)
            extents = [e for s in ix["splits"].values() for b in s["blocks"] for e in b.values()]
            assert all(zlib.crc32(data[o : o + n]) == c for o, n, c in extents), note


@pytest.mark.parametrize("kind", ["sidecar", "spec", "tensor-header", "tensor-bitflip", "tensor-insert"])
def test_checkpoint_edits_reach_the_reader(kind, tmp_path, seeds):
    originals = {p.read_bytes() for p in seeds["ckpt"]} | {p.with_suffix(".json").read_bytes() for p in seeds["ckpt"]}
    for path, note in _cases("ckpt", kind, tmp_path, seeds):
        tensor, sidecar = path.read_bytes(), path.with_suffix(".json").read_bytes()
        if kind.startswith("tensor"):  # the sidecar's sha256 is recomputed: the safetensors reader sees the edit
            assert tensor not in originals, note
            assert json.loads(sidecar)["sha256"] == hashlib.sha256(tensor).hexdigest(), note
        else:
            assert sidecar not in originals and tensor in originals, note


@pytest.mark.parametrize("fmt,kind", [("registry", "manifest"), ("circuit", "json")])
def test_json_edits_change_the_document(fmt, kind, tmp_path, seeds):
    for path, note in _cases(fmt, kind, tmp_path, seeds):
        if fmt == "registry":
            docs = {p.relative_to(path): p.read_bytes() for p in path.glob("models/*/*/manifest.json")}
            seed = {
                p.relative_to(seeds[fmt][0]): p.read_bytes() for p in seeds[fmt][0].glob("models/*/*/manifest.json")
            }
            assert docs != seed, note
        else:
            assert path.read_bytes() != seeds[fmt][0].read_bytes(), note


@pytest.mark.parametrize("case", ["lep:0:5", "lep:0:8", "lds:0:9", "ckpt:0:11", "registry:0:7", "circuit:0:3"])
def test_cases_are_reproducible(case, tmp_path, seeds):
    fmt, seed, index = case.split(":")
    built = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        path, note = build_case(fmt, int(seed), int(index), seeds, tmp_path / run)
        files = (
            sorted(p for p in Path(path).rglob("*") if p.is_file())
            if Path(path).is_dir()
            else sorted(Path(path).parent.iterdir())
        )
        built.append((note, [(p.name, p.read_bytes()) for p in files]))
    assert built[0] == built[1]
