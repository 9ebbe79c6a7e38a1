"""The landing folder: which files are new, finished and not seen before.

Pure logic shared by the export sensor (and, later, the documents sensor). A landing
folder is any fsspec URL: a local path by default, ``s3://bucket/prefix`` or
``memory://…`` by configuration.

A file becomes *ready* only when it looked the same (size and change time) on two
consecutive scans and does not carry a temporary suffix, so a file still being
copied waits for the next tick. Ready files are keyed by the SHA-256 of their bytes:
the same bytes dropped again (under any name) start nothing.

The scan cursor stays small whatever the size of the folder: a change-time watermark,
the paths that sit exactly on the watermark, and the files still waiting to settle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import fsspec
from fsspec.core import url_to_fs

EXPORT_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".jsonl", ".ndjson")
# Suffixes that copy tools, browsers and editors put on files they are still writing.
TEMPORARY_SUFFIXES: tuple[str, ...] = (".tmp", ".part", ".partial", ".crdownload", ".download", ".filepart", ".swp", "~")
HASH_CHUNK_BYTES = 4 * 1024 * 1024
PARTITION_KEY_LENGTH = 16  # hex digits of the SHA-256 used as the partition key


@dataclass(frozen=True)
class LandingFile:
    """One file seen in the landing folder."""

    path: str  # as fsspec names it, with the protocol for non-local file systems
    size: int
    changed: float  # the later of modification and creation time, seconds since the epoch


@dataclass
class LandingCursor:
    """What a scan remembers between ticks (serialised into the sensor cursor)."""

    watermark: float = 0.0
    at_watermark: list[str] = field(default_factory=list)
    pending: dict[str, tuple[int, float]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"w": self.watermark, "a": self.at_watermark, "p": self.pending}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> LandingCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(float(data["w"]), list(data["a"]), {k: (int(v[0]), float(v[1])) for k, v in data["p"].items()})


@dataclass(frozen=True)
class ReadyFile:
    """A settled file and its content hash."""

    file: LandingFile
    content_hash: str


@dataclass
class ScanResult:
    ready: list[ReadyFile]
    waiting: list[str]
    errors: list[str]
    cursor: LandingCursor


def is_temporary(path: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def list_landing_files(url: str, suffixes: Iterable[str] = EXPORT_SUFFIXES, **storage_options: Any) -> list[LandingFile]:
    """Every candidate file under ``url`` (recursively), temporary files excluded."""
    fs, root = url_to_fs(url, **storage_options)
    if not fs.exists(root):
        return []
    wanted = tuple(s.lower() for s in suffixes)
    files = []
    for path, info in fs.find(root, detail=True).items():
        if info.get("type") != "file" or is_temporary(path) or not path.lower().endswith(wanted):
            continue
        files.append(LandingFile(_full_path(fs, path), int(info.get("size") or 0), _changed_time(info)))
    return sorted(files, key=lambda f: (f.changed, f.path))


def content_hash(path: str, **storage_options: Any) -> str:
    """SHA-256 of a file's bytes, shortened to the partition key length."""
    digest = hashlib.sha256()
    with fsspec.open(path, "rb", **storage_options) as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()[:PARTITION_KEY_LENGTH]


def scan_landing(
    files: list[LandingFile],
    cursor: LandingCursor,
    hasher: Callable[[str], str],
) -> ScanResult:
    """Decide which files are ready, which wait, and advance the cursor.

    A file is a candidate when it changed after the watermark, sits on the watermark
    without having been handled, or was waiting to settle. It is ready when the last
    scan saw it with the same size and change time. Files that cannot be read are
    reported and retried on the next tick; they never block the others.
    """
    handled_at_watermark = set(cursor.at_watermark)
    candidates = [
        f
        for f in files
        if f.changed > cursor.watermark
        or (f.changed == cursor.watermark and f.path not in handled_at_watermark)
        or f.path in cursor.pending
    ]
    ready: list[ReadyFile] = []
    waiting: list[str] = []
    errors: list[str] = []
    pending: dict[str, tuple[int, float]] = {}
    handled: list[LandingFile] = []
    for f in candidates:
        if cursor.pending.get(f.path) != (f.size, f.changed):
            # First sighting, or still being written: look again on the next tick.
            pending[f.path] = (f.size, f.changed)
            waiting.append(f.path)
            continue
        try:
            ready.append(ReadyFile(f, hasher(f.path)))
            handled.append(f)
        except OSError as error:  # unreadable: permission, vanished, I/O error
            errors.append(f"{f.path}: {error}")
            pending[f.path] = (f.size, f.changed)

    watermark = cursor.watermark
    at_watermark = set(handled_at_watermark)
    for f in handled:
        if f.changed > watermark:
            watermark, at_watermark = f.changed, set()
        if f.changed == watermark:
            at_watermark.add(f.path)
    # Files still waiting may lie behind the new watermark: ``pending`` keeps them candidates.
    return ScanResult(ready, waiting, errors, LandingCursor(watermark, sorted(at_watermark), pending))


def _full_path(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A path that fsspec.open understands on its own: plain for local files, a URL otherwise."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return path if "file" in protocols else fs.unstrip_protocol(path)


def _changed_time(info: dict[str, Any]) -> float:
    times = [info.get("mtime"), info.get("created"), info.get("LastModified"), info.get("last_modified")]
    values = [t.timestamp() if isinstance(t, datetime) else float(t) for t in times if t is not None]
    return max(values) if values else 0.0
