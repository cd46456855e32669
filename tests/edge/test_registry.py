"""The artifact registry: round trips on a folder and on a real S3-speaking server (moto on loopback),
immutable versions, corrupted artifacts refused on pull, keys that escape the root refused, and the
attacks of the outside security review (each test named after what it proves)."""

import fcntl
import hashlib
import json
import os
import re
import threading
import time

import boto3
import numpy as np
import pytest

from lepton.edge import registry
from lepton.edge.registry import Manifest, Registry, RegistryError, RegistryWarning, parse_ref, pull, push, safe_key
from lepton.errors import FormatError


def onnx_file(path, seed=0, floats=12_000):
    """A valid ONNX model (y = x + w) of about ``4 * floats`` bytes, different for each seed."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(seed).standard_normal(floats).astype(np.float32), "w")
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [floats]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", io[:1], io[1:], [w])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def lep_file(path):
    from lepton.compress.container import save_lep
    from lepton.models import ModelSpec

    spec = ModelSpec("lenet-300-100", (1, 8, 8), 10, {"fc1": 48, "fc2": 24})
    save_lep(path, spec, spec.build().state_dict())
    return path


@pytest.fixture
def artifact(tmp_path):
    return onnx_file(tmp_path / "src" / "model.onnx")


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, request):
    """A fresh bucket on the moto server; boto3 finds the endpoint through AWS_ENDPOINT_URL like a real user's."""
    for key, value in {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    name = request.node.name  # parametrized tests share a prefix: a hash of the whole id keeps buckets apart
    bucket = f"lepton-{re.sub('[^a-z0-9]+', '-', name.lower())[:40]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    return client, bucket


def roundtrip(root, artifact, out):
    m1 = push(artifact, f"{root}/lenet5", metrics={"test_accuracy": 0.991, "bytes": 50_000, "note": "fp32"})
    assert (m1.name, m1.version, m1.kind, m1.file) == ("lenet5", "1", "onnx", "lenet5.onnx")
    assert m1.sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest() and m1.size == artifact.stat().st_size
    assert m1.metrics == {"test_accuracy": 0.991, "bytes": 50_000, "note": "fp32"}
    onnx_file(artifact, seed=1)
    m2 = push(artifact, f"{root}/lenet5")
    assert m2.version == "2"
    got, path = pull(f"{root}/lenet5", out)  # latest
    assert got == m2 and path == out / "lenet5.onnx" and path.read_bytes() == artifact.read_bytes()
    got, path = pull(f"{root}/lenet5:1", out / "v1.onnx")
    assert got == m1 and hashlib.sha256(path.read_bytes()).hexdigest() == m1.sha256
    with pytest.raises(RegistryError, match="immutable"):
        push(artifact, f"{root}/lenet5:1")
    with pytest.raises(RegistryError, match="not published"):
        pull(f"{root}/lenet5:9", out)
    assert Registry(root).versions("lenet5") == ["1", "2"] and Registry(root).names() == ["lenet5"]
    return m1


def test_local_roundtrip(tmp_path, artifact):
    m1 = roundtrip(tmp_path / "reg", artifact, tmp_path / "out")
    manifest = json.loads((tmp_path / "reg/models/lenet5/1/manifest.json").read_text())
    assert Manifest.model_validate(manifest) == m1
    assert (tmp_path / "reg/blobs/sha256" / m1.sha256).stat().st_size == m1.size
    assert not [p for p in (tmp_path / "reg").rglob("*") if p.name.endswith(".tmp")]  # no temporary leftovers


@pytest.mark.timeout(60)
def test_s3_roundtrip(s3, artifact, tmp_path):
    client, bucket = s3
    m1 = roundtrip(f"s3://{bucket}/models", artifact, tmp_path / "out")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"models/blobs/sha256/{m1.sha256}" in keys and "models/models/lenet5/1/manifest.json" in keys


def corrupt_local(root, m):
    blob = root / "blobs/sha256" / m.sha256
    data = bytearray(blob.read_bytes())
    data[1000] ^= 1
    blob.write_bytes(bytes(data))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_corrupted_or_truncated_artifact_is_refused_and_nothing_is_written(where, request, artifact, tmp_path):
    if where == "s3":
        client, bucket = request.getfixturevalue("s3")
        root = f"s3://{bucket}"
    else:
        root = tmp_path / "reg"
    m = push(artifact, f"{root}/lenet5:1")
    good = artifact.read_bytes()
    for damaged in (good[:1000] + bytes([good[1000] ^ 1]) + good[1001:], good[:-1]):
        if where == "s3":
            client.put_object(Bucket=bucket, Key=f"blobs/sha256/{m.sha256}", Body=damaged)
        else:
            (root / "blobs/sha256" / m.sha256).write_bytes(damaged)
        out = tmp_path / "out"
        with pytest.raises(FormatError, match="corrupted"):
            pull(f"{root}/lenet5:1", out)
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "url", ["reg/..:1", "reg/lenet5:..", "reg/lenet5:../../etc", "reg/.hidden", "reg/a:b:c", "reg/", "s3://bucket/"]
)
def test_refs_that_escape_or_are_malformed_are_refused(url):
    with pytest.raises(RegistryError):
        parse_ref(url)


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a\\..\\b", ""])
def test_keys_that_escape_the_root_are_refused(key):
    with pytest.raises(RegistryError, match="escapes"):
        safe_key(key)


def test_a_symlink_out_of_a_local_root_and_forged_manifests_are_refused(tmp_path, artifact):
    root = tmp_path / "reg"
    m = push(artifact, f"{root}/lenet5:1")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "models/evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RegistryError, match="outside the registry root"):
        push(artifact, f"{root}/evil:1")
    assert not any(outside.iterdir())
    # a manifest copied under another name, and one whose sha256 points elsewhere
    (root / "models/alias/1").mkdir(parents=True)
    (root / "models/alias/1/manifest.json").write_text(m.model_dump_json())
    with pytest.raises(FormatError, match="moved or forged"):
        pull(f"{root}/alias:1", tmp_path)
    forged = m.model_dump() | {"name": "forged", "sha256": "../../../../etc/passwd"}
    (root / "models/forged/1").mkdir(parents=True)
    (root / "models/forged/1/manifest.json").write_text(json.dumps(forged))
    with pytest.raises(FormatError, match="invalid"):
        pull(f"{root}/forged:1", tmp_path)


@pytest.mark.timeout(60)
def test_concurrent_pushes_of_one_version_publish_exactly_one(tmp_path):
    root = tmp_path / "reg"
    files = []
    for i in range(6):
        files.append(onnx_file(tmp_path / f"m{i}.onnx", seed=i, floats=2000))
    results = [None] * len(files)

    def push_one(i):
        try:
            results[i] = push(files[i], f"{root}/lenet5:1")
        except RegistryError as e:
            results[i] = e

    threads = [threading.Thread(target=push_one, args=(i,)) for i in range(len(files))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [r for r in results if isinstance(r, Manifest)]
    assert len(winners) == 1 and all(isinstance(r, RegistryError) for r in results if r is not winners[0])
    _, path = pull(f"{root}/lenet5:1", tmp_path / "out")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == winners[0].sha256


def test_push_pull_and_list_commands(tmp_path, artifact, monkeypatch):
    from typer.testing import CliRunner

    from lepton.cli import commands  # noqa: F401  (registers the commands)
    from lepton.cli.app import app

    monkeypatch.setenv("LEPTON_REGISTRY", str(tmp_path / "default"))

    def lepton(*args):
        r = CliRunner().invoke(app, list(args))
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    assert lepton("push", str(artifact), "lenet5", "--metric", "test_accuracy=0.99", "--format", "json")["metrics"] == {
        "test_accuracy": 0.99
    }
    pulled = lepton("pull", "lenet5:1", "-o", str(tmp_path / "got.onnx"), "--format", "json")
    assert pulled["manifest"]["version"] == "1"
    assert (tmp_path / "got.onnx").read_bytes() == artifact.read_bytes()
    rows = lepton("registry", "list", "--format", "json")
    assert [(row["name"], row["version"]) for row in rows] == [("lenet5", "1")]
    with pytest.raises(RegistryError, match="may not contain"):
        CliRunner().invoke(app, ["pull", "lenet5:../../x"], catch_exceptions=False)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[" * 100_000 + "]" * 100_000, "100000 levels deep"),
        ('{"size": 1e999}', "1e999, which overflows"),
        ('{"name": "lenet5", "name": "lenet5"}', "duplicate JSON key 'name'"),
        ("\xff", "not valid UTF-8"),
        ('{"name": 5}', "is invalid: field"),
        ("[]", "top level"),
    ],
)
def test_a_bad_manifest_is_refused_and_never_hides_the_other_versions(tmp_path, artifact, text, needle):
    from typer.testing import CliRunner

    from lepton.cli import commands  # noqa: F401  (registers the commands)
    from lepton.cli.app import app

    root = tmp_path / "reg"
    m1 = push(artifact, f"{root}/lenet5:1")
    push(artifact, f"{root}/other:1")
    (root / "models/lenet5/2").mkdir(parents=True)
    (root / "models/lenet5/2/manifest.json").write_text(text, encoding="latin-1")
    with pytest.raises(FormatError, match=f"the manifest of lenet5:2 .*{needle}") as info:
        Registry(root).manifest("lenet5", "2")
    assert "\n" not in str(info.value)
    good, bad = Registry(root).scan("lenet5")
    assert good == [m1] and list(bad) == ["2"] and needle in bad["2"]
    assert Registry(root).versions("lenet5") == ["1"]
    with pytest.warns(RegistryWarning, match="lenet5:2 .*skipped it when choosing the latest version"):
        got, _ = pull(f"{root}/lenet5", tmp_path / "out")
    assert got == m1
    with pytest.raises(FormatError, match="the manifest of lenet5:2"):
        pull(f"{root}/lenet5:2", tmp_path / "out")

    listed = CliRunner().invoke(app, ["registry", "list", str(root), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert [(r["name"], r["version"]) for r in json.loads(listed.stdout)] == [("lenet5", "1"), ("other", "1")]
    assert listed.stderr.count("\n") == 1 and listed.stderr.startswith("warning: ") and "lenet5:2" in listed.stderr
    pulled = CliRunner().invoke(app, ["pull", f"{root}/lenet5", "-o", str(tmp_path / "cli"), "--format", "json"])
    assert pulled.exit_code == 0 and json.loads(pulled.stdout)["manifest"]["version"] == "1"
    assert pulled.stderr.startswith("warning: ") and "lenet5:2" in pulled.stderr and "Traceback" not in pulled.stderr


def test_only_bad_manifests_give_one_clear_error(tmp_path):
    root = tmp_path / "reg"
    (root / "models/lenet5/1").mkdir(parents=True)
    (root / "models/lenet5/1/manifest.json").write_text("[" * 5000)
    with (
        pytest.warns(RegistryWarning),
        pytest.raises(RegistryError, match="no published version of 'lenet5' with a valid manifest \\(invalid: 1;"),
    ):
        pull(f"{root}/lenet5", tmp_path)


def test_metrics_file_is_parsed_strictly(tmp_path):
    from lepton.cli.registry import _metrics

    bad = tmp_path / "m.json"
    for text, needle in (('{"acc": NaN}', "NaN"), ('{"acc": 1e999}', "overflows"), ("[" * 100_000, "levels deep")):
        bad.write_text(text)
        with pytest.raises(FormatError, match=f"--metrics .*m.json .*{needle}"):
            _metrics([], bad)
    bad.write_text('{"acc": 0.5}')
    assert _metrics(["n=3"], bad) == {"acc": 0.5, "n": 3}


@pytest.mark.parametrize(
    "file", ["/abs/x.lep", "../x.lep", "x.lep/../../authorized_keys", "a/x.lep", "x.lep\n", "x" * 200 + ".lep"]
)
def test_a_manifest_file_name_is_matched_whole(tmp_path, artifact, file):
    """pydantic's ``pattern`` searches; an unanchored one let a forged manifest name a path outside -o."""
    root = tmp_path / "reg"
    m = push(artifact, f"{root}/lenet5:1")
    (root / "models/lenet5/1/manifest.json").write_text(json.dumps(m.model_dump() | {"file": file}))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FormatError, match="invalid"):
        pull(f"{root}/lenet5:1", out)
    assert not any(out.iterdir()) and not (tmp_path / "x.lep").exists()


# ---- the outside security review: one test per attack, each fails on the code before the fix ----------------


def registry_root(where, request, tmp_path):
    """(root URL, s3 client or None) for a local folder or a fresh moto bucket."""
    if where == "s3":
        client, bucket = request.getfixturevalue("s3")
        return f"s3://{bucket}", client
    return tmp_path / "reg", None


def files_under(path):
    return {p for p in path.rglob("*")}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["local", "s3"])
@pytest.mark.parametrize("file", ["{tmp}/abs/x.onnx", "../x.onnx", "x.onnx/../../authorized_keys", "a/x.onnx"])
def test_pull_never_writes_outside_the_output_folder(where, file, request, tmp_path, artifact, monkeypatch):
    """Even if a forged file name got past the manifest's patterns, the resolved output must stay in -o DIR."""
    root, client = registry_root(where, request, tmp_path)
    m = push(artifact, f"{root}/lenet5:1", s3_client=client)
    forged = Manifest.model_construct(**(m.model_dump() | {"file": file.format(tmp=tmp_path)}))
    monkeypatch.setattr(Registry, "resolve", lambda self, name, version: forged)
    out = tmp_path / "out"
    out.mkdir()
    before = files_under(tmp_path)
    with pytest.raises(RegistryError, match="outside the output folder"):
        pull(f"{root}/lenet5:1", out, s3_client=client)
    assert files_under(tmp_path) == before


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_corrupted_blob_is_repaired_by_pushing_again(where, request, tmp_path, artifact):
    root, client = registry_root(where, request, tmp_path)
    m = push(artifact, f"{root}/lenet5", s3_client=client)
    good = artifact.read_bytes()
    for damaged in (good[:1000] + bytes([good[1000] ^ 1]) + good[1001:], good[:-1], good + b"x"):
        if client is not None:
            client.put_object(Bucket=root[5:], Key=f"blobs/sha256/{m.sha256}", Body=damaged)
        else:
            (root / "blobs/sha256" / m.sha256).write_bytes(damaged)
        with pytest.raises(FormatError, match="corrupted"):
            pull(f"{root}/lenet5:1", tmp_path / "out", s3_client=client)
        again = push(artifact, f"{root}/lenet5", s3_client=client)  # "re-push the artifact", as the error says
        for version in ("1", again.version):
            _, path = pull(f"{root}/lenet5:{version}", tmp_path / "out" / f"v{version}.onnx", s3_client=client)
            assert path.read_bytes() == good
    if client is None:
        assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["local", "s3"])
def test_pull_stops_reading_a_blob_longer_than_its_manifest(where, request, tmp_path, artifact, monkeypatch):
    root, client = registry_root(where, request, tmp_path)
    m = push(artifact, f"{root}/lenet5:1", s3_client=client)
    huge = artifact.read_bytes() + os.urandom(4 << 20)  # 4 MiB more than the manifest's size
    if client is not None:
        client.put_object(Bucket=root[5:], Key=f"blobs/sha256/{m.sha256}", Body=huge)
        received = []
        get_object = client.get_object

        def counting_get_object(**kwargs):
            response = get_object(**kwargs)
            if "/blobs/" in "/" + kwargs["Key"]:
                received.append(response["ContentLength"])
            return response

        monkeypatch.setattr(client, "get_object", counting_get_object)
    else:
        (root / "blobs/sha256" / m.sha256).write_bytes(huge)
    written = []
    write = registry._HashingWriter.write
    monkeypatch.setattr(
        registry._HashingWriter, "write", lambda self, data: written.append(len(data)) or write(self, data)
    )
    out = tmp_path / "out"
    with pytest.raises(FormatError, match=f"corrupted: got more than {m.size} bytes"):
        pull(f"{root}/lenet5:1", out, s3_client=client)
    assert sum(written) <= m.size + 1  # the temporary file never held more than one byte too many
    if client is not None:
        assert sum(received) <= m.size + 1  # nor did S3 send more
    assert not out.exists() or not any(out.iterdir())


def test_a_stale_temporary_is_removed_by_the_next_push_and_pull(tmp_path, artifact):
    root = tmp_path / "reg"
    m = push(artifact, f"{root}/lenet5:1")
    blobs = root / "blobs/sha256"
    old = time.time() - 3600
    stale, fresh, locked = (blobs / f".{m.sha256[:8]}.{tag}.tmp" for tag in ("k1ll3d_a", "w0rk1ng_", "l0ck3d__"))
    unrelated = [blobs / "notes.tmp", blobs / f".{m.sha256[:8]}.tmp", blobs / ".x.abc.tmp"]
    for p in (stale, fresh, locked, *unrelated):
        p.write_bytes(b"leftover")
        if p is not fresh:
            os.utime(p, (old, old))
    out = tmp_path / "out"
    out.mkdir()
    stale_out = out / ".lenet5.onnx.k1ll3d_b.tmp"
    stale_out.write_bytes(b"leftover")
    os.utime(stale_out, (old, old))
    with open(locked, "rb") as live:  # a writer that is still alive holds its temporary locked
        fcntl.flock(live.fileno(), fcntl.LOCK_EX)
        push(onnx_file(tmp_path / "other.onnx", seed=7), f"{root}/lenet5")
        pull(f"{root}/lenet5:1", out)
    assert not stale.exists() and not stale_out.exists()
    assert fresh.exists() and locked.exists() and all(p.exists() for p in unrelated)


@pytest.mark.timeout(60)
def test_a_failed_s3_upload_leaves_no_multipart_upload(s3, tmp_path, artifact, monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    client, bucket = s3
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 1)
    monkeypatch.setattr(registry.S3Store, "part_size", 16 << 10)
    upload_part = client.upload_part

    def flaky_upload_part(**kwargs):
        if kwargs["PartNumber"] == 2:
            raise EndpointConnectionError(endpoint_url="http://s3.invalid")
        return upload_part(**kwargs)

    monkeypatch.setattr(client, "upload_part", flaky_upload_part)
    with pytest.raises(RegistryError, match="cannot reach S3"):
        push(artifact, f"s3://{bucket}/lenet5:1", s3_client=client)
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert not client.list_objects_v2(Bucket=bucket).get("Contents")
    monkeypatch.setattr(client, "upload_part", upload_part)  # the network is back: a multipart push round-trips
    m = push(artifact, f"s3://{bucket}/lenet5:1", s3_client=client)
    _, path = pull(f"s3://{bucket}/lenet5:1", tmp_path / "out", s3_client=client)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == m.sha256


@pytest.mark.timeout(60)
def test_an_abandoned_s3_upload_is_aborted_by_the_next_push(s3, artifact, monkeypatch):
    client, bucket = s3
    killed = client.create_multipart_upload(Bucket=bucket, Key="blobs/sha256/" + "0" * 64)["UploadId"]
    elsewhere = client.create_multipart_upload(Bucket=bucket, Key="data/big.bin")["UploadId"]
    monkeypatch.setattr(registry, "STALE_TEMP_SECONDS", -60)  # both uploads count as old
    push(artifact, f"s3://{bucket}/lenet5:1", s3_client=client)
    left = {u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}
    assert killed not in left and elsewhere in left


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["local", "s3"])
def test_concurrent_auto_versioned_pushes_all_publish_distinct_versions(where, request, tmp_path):
    root, client = registry_root(where, request, tmp_path)
    files = [onnx_file(tmp_path / f"m{i}.onnx", seed=i, floats=2000) for i in range(8)]
    results = [None] * len(files)
    start = threading.Barrier(len(files))

    def push_one(i):
        start.wait()
        try:
            results[i] = push(files[i], f"{root}/lenet5", s3_client=client)
        except RegistryError as e:
            results[i] = e

    threads = [threading.Thread(target=push_one, args=(i,)) for i in range(len(files))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(r, Manifest) for r in results), results
    assert sorted(int(r.version) for r in results) == list(range(1, 9))
    for f, r in zip(files, results):
        _, path = pull(f"{root}/lenet5:{r.version}", tmp_path / "out" / f"{r.version}.onnx", s3_client=client)
        assert path.read_bytes() == f.read_bytes()


@pytest.mark.parametrize(
    "make, suffix",
    [
        (lambda p: p.write_bytes(os.urandom(20_000)), ".onnx"),  # noise
        (lambda p: p.write_bytes(lep_file(p.with_name("m.lep")).read_bytes()), ".onnx"),  # a .lep named .onnx
        (lambda p: p.write_bytes(onnx_file(p.with_name("m.onnx")).read_bytes()), ".lep"),  # an .onnx named .lep
        (lambda p: p.write_bytes(lep_file(p.with_name("m.lep")).read_bytes()[:-10]), ".lep"),  # truncated .lep
        (lambda p: p.write_bytes(b""), ".onnx"),
    ],
)
def test_push_refuses_an_artifact_that_is_not_what_its_suffix_says(tmp_path, make, suffix):
    bad = tmp_path / "src" / f"bad{suffix}"
    bad.parent.mkdir()
    make(bad)
    with pytest.raises(FormatError, match=f"bad\\{suffix}: not a valid ") as info:
        push(bad, f"{tmp_path / 'reg'}/lenet5")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "reg").exists()


def test_a_valid_lep_round_trips(tmp_path):
    lep = lep_file(tmp_path / "src" / "m.lep")
    m = push(lep, f"{tmp_path / 'reg'}/lenet5")
    assert (m.kind, m.file) == ("lep", "lenet5.lep")
    _, path = pull(f"{tmp_path / 'reg'}/lenet5", tmp_path / "out")
    assert path.read_bytes() == lep.read_bytes()


@pytest.mark.parametrize("change", [{"kind": "lep"}, {"file": "lenet5.lep"}])
def test_pull_refuses_a_manifest_whose_kind_does_not_match_its_file(tmp_path, artifact, change):
    root = tmp_path / "reg"
    m = push(artifact, f"{root}/lenet5:1")
    (root / "models/lenet5/1/manifest.json").write_text(json.dumps(m.model_dump() | change))
    with pytest.raises(FormatError, match="does not match file"):
        pull(f"{root}/lenet5:1", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_registry_noun_verbs_and_the_short_aliases(tmp_path, artifact):
    """``lepton registry push|pull|list`` is the documented form; ``lepton push|pull`` stay as aliases."""
    from click.testing import CliRunner

    from lepton.cli.app import cli_command

    runner, app = CliRunner(), cli_command()
    root = tmp_path / "reg"
    for verb in (["registry", "push"], ["push"]):
        r = runner.invoke(app, [*verb, str(artifact), f"{root}/lenet5", "--format", "json"])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["registry", "list", str(root), "--format", "json"])
    assert r.exit_code == 0 and [v["version"] for v in json.loads(r.output)] == ["1", "2"]
    for verb in (["registry", "pull"], ["pull"]):
        out = tmp_path / "-".join(verb)
        out.mkdir()
        assert runner.invoke(app, [*verb, f"{root}/lenet5:1", "-o", str(out)]).exit_code == 0
        assert (out / "lenet5.onnx").read_bytes() == artifact.read_bytes()  # named after the artifact
