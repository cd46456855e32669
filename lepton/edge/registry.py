"""A registry of versioned model artifacts (``.onnx`` or ``.lep``) in a local folder or an S3 bucket.

Layout under the registry root (a folder, ``file://`` URL or ``s3://bucket/prefix``)::

    blobs/sha256/<hex>                       the artifact bytes, content-addressed, never rewritten
    models/<name>/<version>/manifest.json    name, version, file name, kind, sha256, size, metrics

A push first checks that the artifact is what its suffix says (a ``.lep`` decodes, an ``.onnx`` passes the
ONNX checker), then uploads the blob and the manifest last, each as one atomic write (temporary name +
rename locally; a single PUT / completed multipart upload on S3, aborted if it fails), so a version becomes
visible only when its bytes are complete. A blob that already exists is hashed and kept only if it is
intact; a damaged one is replaced. Manifests are created no-clobber: a version, once published, never
changes; a push without a version that loses the race for a number takes the next one. A pull downloads
at most ``size + 1`` bytes of the blob to a temporary name beside the destination, hashes them, and renames
the file into place only if its size and SHA-256 match the manifest and it stays inside the output folder.
Names and versions are single, plain path segments; any key that would leave the registry root (``..``,
absolute paths, symlinks out of a local root) is refused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lepton.errors import ConfigError, FormatError, LeptonError
from lepton.utils import strict_json
from lepton.utils.io import STALE_TEMP_SECONDS, atomic_path, sha256_file, temp_beside
from lepton.utils.paths import cache_dir

MANIFEST_FORMAT = "lepton-artifact"
MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20
KINDS = {".onnx": "onnx", ".lep": "lep"}
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
MAX_ONNX_BYTES = (2 << 30) - 1  # protobuf's limit: a larger .onnx keeps its weights in external files
AUTO_VERSION_TRIES = 64  # a push without a version retries this often when others publish its number first


class RegistryError(LeptonError):
    """A registry URL, key or artifact is invalid, missing, already published or fails verification."""


class VersionExistsError(RegistryError):
    """The version a push would create is already published (possibly a moment ago, by a concurrent push)."""


class RegistryWarning(UserWarning):
    """A published version was skipped because its manifest is invalid (the message says which and why)."""


class Manifest(BaseModel):
    """What a published version records; ``sha256`` and ``size`` describe the blob byte for byte."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["lepton-artifact"] = MANIFEST_FORMAT
    format_version: Literal[1] = MANIFEST_VERSION
    # pydantic's ``pattern`` searches: every pattern is anchored so that the whole value must match
    name: str = Field(pattern=f"^{_SEGMENT.pattern}$")
    version: str = Field(pattern=f"^{_SEGMENT.pattern}$")
    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,122}\.(onnx|lep)$")
    kind: Literal["onnx", "lep"]
    sha256: str = Field(pattern=f"^{_SHA256.pattern}$")
    size: int = Field(ge=0)
    metrics: dict[str, float | int | str] = Field(default_factory=dict)
    created: str

    @model_validator(mode="after")
    def _kind_matches_file(self) -> Manifest:
        if KINDS[Path(self.file).suffix] != self.kind:
            raise ValueError(f"kind {self.kind!r} does not match file {self.file!r}")
        return self


def check_segment(value: str, what: str) -> str:
    """``value`` if it is one safe path segment (letters, digits, ``._+-``, not starting with ``.``)."""
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value) or value in (".", ".."):
        raise RegistryError(
            f"{what} {value!r} is not allowed: use 1-128 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit (no '/', no '..')."
        )
    return value


def safe_key(key: str) -> str:
    """``key`` if it stays inside the registry root: relative, no empty, ``.`` or ``..`` segments, no ``\\``."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or "\x00" in key or any(p in ("", ".", "..") for p in parts):
        raise RegistryError(
            f"registry key {key!r} escapes the registry root or is malformed; keys are relative "
            "paths without '..', '.', empty segments or backslashes."
        )
    return key


def blob_key(sha256: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise RegistryError(f"sha256 {sha256!r} is not 64 lowercase hex digits.")
    return f"blobs/sha256/{sha256}"


def manifest_key(name: str, version: str) -> str:
    return f"models/{check_segment(name, 'model name')}/{check_segment(version, 'version')}/manifest.json"


class Store(Protocol):
    """Byte storage under one root; every key has passed :func:`safe_key`."""

    url: str

    def exists(self, key: str) -> bool: ...
    def read_bytes(self, key: str, limit: int) -> bytes: ...
    def write_file(self, key: str, path: Path) -> None: ...
    def create_bytes(self, key: str, data: bytes) -> None: ...
    def download(self, key: str, out: Any, limit: int) -> int: ...
    def list_dirs(self, prefix: str) -> list[str]: ...


class LocalStore:
    """A folder. Writes go to a temporary name in the target folder and are renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, key: str) -> Path:
        root = self.root.resolve()
        path = (root / safe_key(key)).resolve()  # resolve() follows symlinks: a link out of the root is refused
        if not path.is_relative_to(root):
            raise RegistryError(f"registry key {key!r} resolves to {path}, outside the registry root {root}.")
        return path

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def read_bytes(self, key: str, limit: int) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise RegistryError(f"{self.url}: {key} does not exist.")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise FormatError(f"{self.url}: {key} is larger than {limit} bytes; it is not a Lepton manifest.")
        return data

    def write_file(self, key: str, path: Path) -> None:
        # atomic_path renames over an existing file: a damaged blob is replaced whole, never patched in place
        with atomic_path(self._path(key)) as tmp:
            shutil.copyfile(path, tmp)

    def create_bytes(self, key: str, data: bytes) -> None:
        final = self._path(key)
        with temp_beside(final) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            try:
                os.link(tmp, final)  # a hard link never replaces an existing file: an atomic no-clobber publish
            except FileExistsError:
                raise VersionExistsError(
                    f"{self.url}: {key} already exists; published versions are immutable, push under a new --version."
                ) from None

    def download(self, key: str, out: Any, limit: int) -> int:
        path = self._path(key)
        if not path.is_file():
            raise RegistryError(f"{self.url}: {key} does not exist; the registry is missing a blob.")
        with open(path, "rb") as f:
            return copy_bounded(f, out, limit)

    def list_dirs(self, prefix: str) -> list[str]:
        path = self._path(prefix) if prefix else self.root.resolve()
        return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


class S3Store:
    """``s3://bucket/prefix`` through boto3. The endpoint comes from ``AWS_ENDPOINT_URL`` if set (e.g. MinIO)."""

    part_size = 8 << 20  # larger files go up as a multipart upload of parts this big

    def __init__(self, bucket: str, prefix: str, client: Any | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        key = safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise RegistryError(f"{self.url}: {key} does not exist.") from e
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise VersionExistsError(
                    f"{self.url}: {key} already exists; published versions are immutable, push under a new --version."
                ) from e
            raise RegistryError(f"{self.url}: S3 refused {key}: {code} {e}") from e
        except BotoCoreError as e:
            raise RegistryError(
                f"{self.url}: cannot reach S3 for {key}: {e}; check AWS_ENDPOINT_URL and credentials."
            ) from e

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            with self._errors(key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except RegistryError as e:
            if isinstance(e.__cause__, ClientError) and e.__cause__.response.get("Error", {}).get("Code") in (
                "404",
                "NoSuchKey",
                "NotFound",
            ):
                return False
            raise
        return True

    def read_bytes(self, key: str, limit: int) -> bytes:
        with self._errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            data = body.read(limit + 1)
            body.close()
        if len(data) > limit:
            raise FormatError(f"{self.url}: {key} is larger than {limit} bytes; it is not a Lepton manifest.")
        return data

    def write_file(self, key: str, path: Path) -> None:
        """One PUT, or above :attr:`part_size` one multipart upload that is completed or else aborted: S3 shows
        the object whole or not at all, replaces an existing one, and keeps no orphaned parts."""
        full = self._key(key)
        with self._errors(key):
            self._abort_stale_uploads(full.rpartition("/")[0] + "/")
            size = path.stat().st_size
            with open(path, "rb") as f:
                if size <= self.part_size:
                    self.client.put_object(Bucket=self.bucket, Key=full, Body=f)
                    return
                part = max(self.part_size, -(-size // 10_000))  # S3 allows at most 10,000 parts
                upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=full)["UploadId"]
                try:
                    parts = []
                    while block := f.read(part):
                        n = len(parts) + 1
                        etag = self.client.upload_part(
                            Bucket=self.bucket, Key=full, UploadId=upload, PartNumber=n, Body=block
                        )["ETag"]
                        parts.append({"ETag": etag, "PartNumber": n})
                    self.client.complete_multipart_upload(
                        Bucket=self.bucket, Key=full, UploadId=upload, MultipartUpload={"Parts": parts}
                    )
                except BaseException:
                    with contextlib.suppress(Exception):
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload)
                    raise

    def _abort_stale_uploads(self, prefix: str) -> None:
        """Abort the multipart uploads under ``prefix`` that killed pushes left (older than the stale age)."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=STALE_TEMP_SECONDS)
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
            for u in page.get("Uploads", []):
                if u["Initiated"] < cutoff:
                    with contextlib.suppress(Exception):  # completed or aborted by someone else meanwhile
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"])

    def create_bytes(self, key: str, data: bytes) -> None:
        with self._errors(key):
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*", ContentType="application/json"
            )

    def download(self, key: str, out: Any, limit: int) -> int:
        from botocore.exceptions import ClientError

        with self._errors(key):
            try:  # ask for one byte more than expected: enough to see that a blob is too long, never the rest
                body = self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=f"bytes=0-{limit}")["Body"]
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "InvalidRange":
                    raise
                return 0  # S3 answers a range request for an empty object this way
            try:
                return copy_bounded(body, out, limit)
            finally:
                body.close()

    def list_dirs(self, prefix: str) -> list[str]:
        full = self._key(prefix) + "/" if prefix else (f"{self.prefix}/" if self.prefix else "")
        names: list[str] = []
        with self._errors(prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full, Delimiter="/"
            ):
                names += [p["Prefix"][len(full) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return sorted(names)


def copy_bounded(src: BinaryIO, out: Any, limit: int) -> int:
    """Copy at most ``limit + 1`` bytes of ``src`` to ``out``; returns how many (``limit + 1`` means too long)."""
    total = 0
    while total <= limit and (block := src.read(min(_CHUNK, limit + 1 - total))):
        out.write(block)
        total += len(block)
    return total


def open_store(root: str | Path, *, s3_client: Any | None = None) -> Store:
    """The store for ``root``: ``s3://bucket[/prefix]``, ``file:///path`` or a plain folder path."""
    text = str(root)
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise RegistryError(f"{text!r}: {bucket!r} is not a valid S3 bucket name; use s3://bucket/prefix.")
        if prefix.strip("/"):
            safe_key(prefix.strip("/"))
        return S3Store(bucket, prefix, s3_client)
    if "://" in text and not text.startswith("file://"):
        raise RegistryError(f"registry {text!r}: unsupported scheme; use a folder, file:///path or s3://bucket/prefix.")
    return LocalStore(Path(text.removeprefix("file://")).expanduser())


def default_registry() -> str:
    """``$LEPTON_REGISTRY``, else ``<lepton cache>/registry``: where bare ``name[:version]`` refs live."""
    return os.environ.get("LEPTON_REGISTRY") or str(cache_dir() / "registry")


def parse_ref(url: str) -> tuple[str, str, str | None]:
    """``ROOT/NAME[:VERSION]`` -> (root, name, version or None). A bare ``NAME[:VERSION]`` uses the default
    registry. The name and version are checked here; the root is checked by :func:`open_store`."""
    root, sep, last = str(url).rpartition("/")
    if not sep:
        root = default_registry()
    elif not root or not last or root.endswith(":/") or root == "s3:/":
        raise RegistryError(f"{url!r} has no model name; write ROOT/NAME[:VERSION], e.g. s3://bucket/models/lenet5:3.")
    elif ":" in re.sub(r"^(s3|file)://", "", root):
        raise RegistryError(
            f"{url!r}: a version may not contain '/' and a registry folder may not contain ':'; "
            "write ROOT/NAME[:VERSION], e.g. ./registry/lenet5:3."
        )
    name, _, version = last.partition(":")
    check_segment(name, "model name")
    return root, name, check_segment(version, "version") if version else None


class Registry:
    """Push and pull versioned artifacts under one root (a folder or ``s3://bucket/prefix``)."""

    def __init__(self, root: str | Path, *, s3_client: Any | None = None) -> None:
        self.store = open_store(root, s3_client=s3_client)

    def scan(self, name: str) -> tuple[list[Manifest], dict[str, str]]:
        """The published versions of ``name``: the valid manifests, oldest push first, and for each version
        whose manifest is unreadable, forged or invalid, the one-line reason (so one bad version never hides
        the others)."""
        found = [
            v
            for v in self.store.list_dirs(f"models/{check_segment(name, 'model name')}")
            if _SEGMENT.fullmatch(v) and self.store.exists(manifest_key(name, v))
        ]
        good, bad = [], {}
        for v in found:
            try:
                good.append(self.manifest(name, v))
            except FormatError as e:
                bad[v] = str(e)
        return sorted(good, key=lambda m: (m.created, m.version)), bad

    def versions(self, name: str) -> list[str]:
        """Published versions of ``name`` with a valid manifest, oldest push first (see :meth:`scan`)."""
        return [m.version for m in self.scan(name)[0]]

    def names(self) -> list[str]:
        return [n for n in self.store.list_dirs("models") if _SEGMENT.fullmatch(n)]

    def manifest(self, name: str, version: str) -> Manifest:
        key = manifest_key(name, version)
        if not self.store.exists(key):
            raise RegistryError(
                f"{self.store.url}: {name}:{version} is not published "
                f"(published: {', '.join(self._plain_versions(name)) or 'none'})."
            )
        raw = self.store.read_bytes(key, MAX_MANIFEST_BYTES)
        what = f"{self.store.url}: the manifest of {name}:{version}"
        try:
            m = Manifest.model_validate(strict_json.loads(raw, what))
        except ValidationError as e:
            err = e.errors()[0]
            raise FormatError(
                f"{what} is invalid: field {'.'.join(map(str, err['loc'])) or '(top level)'}: "
                f"{err['msg']} ({len(e.errors())} problem(s) in all); re-push the version."
            ) from None
        if (m.name, m.version) != (name, version):
            raise FormatError(
                f"{self.store.url}: the manifest at {key} describes {m.name}:{m.version}, "
                f"not {name}:{version}; it was moved or forged."
            )
        return m

    def _plain_versions(self, name: str) -> list[str]:
        return [v for v in self.store.list_dirs(f"models/{name}") if _SEGMENT.fullmatch(v)]

    def push(
        self,
        path: str | Path,
        name: str,
        version: str | None = None,
        *,
        metrics: dict[str, float | int | str] | None = None,
    ) -> Manifest:
        """Publish ``path`` as ``name:version``. Without a version: one more than the largest integer one, and
        if a concurrent push publishes that number first, the next free one (up to :data:`AUTO_VERSION_TRIES`)."""
        path = Path(path)
        if not path.is_file():
            raise RegistryError(f"{path}: no such file; push a .onnx or .lep artifact.")
        kind = KINDS.get(path.suffix)
        if kind is None:
            raise RegistryError(
                f"{path}: only .onnx and .lep files can be pushed (got {path.suffix or 'no suffix'!r})."
            )
        check_segment(name, "model name")
        if version is not None and self.store.exists(manifest_key(name, version)):
            raise VersionExistsError(
                f"{self.store.url}: {name}:{version} already exists; published versions are "
                "immutable, push under a new --version."
            )
        check_artifact(path, kind)
        digest, size = sha256_file(path), path.stat().st_size
        blob = blob_key(digest)
        if not self._blob_intact(blob, digest, size):  # missing, or damaged since: (re)write it whole
            self.store.write_file(blob, path)
        tried = 0
        for _ in range(1 if version is not None else AUTO_VERSION_TRIES):
            if version is None:
                tried = max([tried] + [int(v) for v in self._plain_versions(name) if v.isdigit()]) + 1
            try:
                manifest = Manifest(
                    name=name,
                    version=version or str(tried),
                    file=f"{name}{path.suffix}",
                    kind=kind,
                    sha256=digest,
                    size=size,
                    metrics=dict(metrics or {}),
                    created=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
                )
            except ValidationError as e:
                raise ConfigError(f"cannot publish {name}:{version or tried}: {e}") from e
            try:
                self.store.create_bytes(
                    manifest_key(name, manifest.version), manifest.model_dump_json(indent=2).encode()
                )
                return manifest
            except VersionExistsError:
                if version is not None:
                    raise
        raise RegistryError(
            f"{self.store.url}: concurrent pushes took every version up to {name}:{tried} before "
            f"this one could publish ({AUTO_VERSION_TRIES} tries); push again or give :VERSION."
        )

    def _blob_intact(self, key: str, sha256: str, size: int) -> bool:
        """Whether ``key`` exists with exactly ``size`` bytes hashing to ``sha256`` (reads at most ``size + 1``)."""
        if not self.store.exists(key):
            return False
        h = hashlib.sha256()
        return self.store.download(key, _HashingWriter(h), size) == size and h.hexdigest() == sha256

    def resolve(self, name: str, version: str | None) -> Manifest:
        if version is None:
            good, bad = self.scan(name)
            for problem in bad.values():
                warnings.warn(f"{problem}; skipped it when choosing the latest version.", RegistryWarning, stacklevel=2)
            if not good:
                raise RegistryError(
                    f"{self.store.url}: no published version of {name!r} with a valid manifest "
                    f"(invalid: {', '.join(bad) or 'none'}; models: {', '.join(self.names()) or 'none'})."
                )
            return good[-1]
        return self.manifest(name, version)

    def pull(self, name: str, version: str | None = None, out: str | Path | None = None) -> tuple[Manifest, Path]:
        """Fetch ``name:version`` (default: the latest push) to ``out`` (a file, or a folder to put
        ``manifest.file`` in, created if missing; default the current folder). The file appears only after
        its SHA-256 and size match the manifest; on a mismatch nothing is written and :class:`FormatError` is raised."""
        m = self.resolve(name, version)
        dest = Path(out) if out is not None else Path.cwd()
        if dest.is_dir() or not dest.suffix:
            folder = dest.resolve()
            final = Path(
                os.path.normpath(folder / m.file)
            )  # lexically: an existing link there is replaced, not followed
            if final.parent != folder:
                raise RegistryError(
                    f"{self.store.url}: the manifest of {name}:{m.version} names file {m.file!r}, "
                    f"which resolves to {final}, outside the output folder {folder}; nothing was "
                    f"written. The manifest is forged: remove models/{name}/{m.version}/ and push again."
                )
            dest = dest / final.name
        if dest.suffix != Path(m.file).suffix:
            raise ConfigError(
                f"-o {dest}: {name}:{m.version} is a .{m.kind} file; give an output ending in "
                f"{Path(m.file).suffix} or a folder."
            )
        with atomic_path(dest) as tmp:
            h = hashlib.sha256()
            with open(tmp, "wb") as f:
                got = self.store.download(blob_key(m.sha256), _HashingWriter(h, f), m.size)
            if got != m.size or h.hexdigest() != m.sha256:
                what = (
                    f"more than {m.size} bytes (stopped reading there)"
                    if got > m.size
                    else f"{got} bytes with sha256 {h.hexdigest()}"
                )
                raise FormatError(
                    f"{self.store.url}: the artifact of {name}:{m.version} is corrupted: got {what}, "
                    f"the manifest says {m.size} bytes with sha256 {m.sha256}; nothing was written. "
                    "Re-push the artifact."
                )
        return m, dest


class _HashingWriter:
    """A write-only file object that hashes what passes through it (and writes it to ``f``, if given)."""

    def __init__(self, h: Any, f: BinaryIO | None = None) -> None:
        self.h, self.f = h, f

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return self.f.write(data) if self.f is not None else len(data)


def check_artifact(path: Path, kind: str) -> None:
    """Refuse an artifact that is not what its suffix says: a ``.lep`` must decode (no model is built), an
    ``.onnx`` must be at most :data:`MAX_ONNX_BYTES`, keep its weights inside and pass ``onnx.checker``."""
    if kind == "lep":
        from lepton.compress.container import load_lep

        try:
            load_lep(path)
        except LeptonError as e:
            raise FormatError(f"{path}: not a valid .lep file, so it was not published: {e}") from None
        return
    import onnx
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import uses_external_data

    if (size := path.stat().st_size) > MAX_ONNX_BYTES:
        raise FormatError(
            f"{path}: {size:,} bytes, more than an .onnx file can hold ({MAX_ONNX_BYTES:,}); "
            "export the model again (lepton edge export)."
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError) as e:
        detail = (str(e).strip().splitlines() or [""])[0]
        raise FormatError(
            f"{path}: not a valid ONNX model ({type(e).__name__}: {detail}), so it was not "
            "published; export it again (lepton edge export)."
        ) from None
    if any(uses_external_data(t) for t in model.graph.initializer):
        raise FormatError(
            f"{path}: the model keeps weights in external data files, which a registry artifact "
            "cannot carry; export it with the weights inside the .onnx file."
        )


def push(
    path: str | Path, url: str, *, metrics: dict[str, float | int | str] | None = None, s3_client: Any | None = None
) -> Manifest:
    """Publish ``path`` at ``url`` = ``ROOT/NAME[:VERSION]`` (a bare ``NAME[:VERSION]`` uses the default registry)."""
    root, name, version = parse_ref(url)
    return Registry(root, s3_client=s3_client).push(path, name, version, metrics=metrics)


def pull(url: str, out: str | Path | None = None, *, s3_client: Any | None = None) -> tuple[Manifest, Path]:
    """Fetch and verify ``ROOT/NAME[:VERSION]`` (default: the latest version) into ``out``."""
    root, name, version = parse_ref(url)
    return Registry(root, s3_client=s3_client).pull(name, version, out)
