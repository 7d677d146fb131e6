"""Word vectors for a token task's embedding layer: read from a file, or trained here.

``task.embeddings.path`` names a file in one of four layouts:

* ``word2vec_text``: a header line ``<count> <dim>``, then ``word v1 ... vD`` per line;
* ``fasttext`` (``.vec``): the same layout as word2vec text;
* ``glove``: no header, ``word v1 ... vD`` from the first line on;
* ``word2vec_binary`` (``.bin``): the header line, then per word its UTF-8 bytes, a space
  and D little-endian float32 values (an optional newline after each vector).

Any of them may be gzip-compressed (detected from the file's first bytes). The format is
``task.embeddings.format``, else the extension: ``.bin`` binary, ``.vec`` fastText, ``.txt``
word2vec text when its first line is a ``<count> <dim>`` header and GloVe otherwise.

Files of pretrained vectors run to gigabytes and millions of words, while a task's
vocabulary has thousands: the file is streamed line by line (binary: record by record)
and only the vectors of vocabulary words are kept, so memory is vocabulary x dim whatever
the file's size. Only those rows are parsed as numbers; every other row is checked for
its value count and its UTF-8 only.

Matching: a vocabulary word takes the vector of the same word in the file; a word that
has none falls back to a file word equal to it after lowercasing both (the first such
word in the file, usually the most frequent casing), so a cased vocabulary can use
lowercased GloVe vectors and a lowercased one can use cased word2vec vectors.

Coverage is the fraction of vocabulary words (the specials ``<pad>``, ``<unk>``, ``<s>``,
``</s>`` excluded) that got a vector of their own: from the file, or trained on the corpus.
Vectors that fastText composes from character n-grams for words its corpus never had are
used but counted apart (``by_subword``), not as found: vectors trained on English give every
Chinese character one, and meaningless. Every other row is drawn from a normal distribution
with the per-dimension mean and standard deviation of the found vectors, so that missing
words sit on the same scale as the rest (zeros would make them all one word, and a fixed
``N(0, 1)`` would dwarf typical vectors); ``<pad>`` is zero.

``task.embeddings.train=word2vec|fasttext`` trains the vectors here with gensim on the
task's training text (or ``task.embeddings.corpus``) and writes them in word2vec text
format under ``<data_dir>/prepared/embeddings-<fingerprint>/vectors.txt``; they are then
read back like any file. The fingerprint covers the tokenised corpus, every gensim setting
and gensim's version, so a second run with the same inputs reads the cache and trains
nothing. fastText's n-gram-only words are listed beside it, in ``subword_only.txt``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from rnnlab.core.dist import is_rank_zero
from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data.sources import file_lock, write_once
from rnnlab.data.splits import fingerprint
from rnnlab.data.vocab import BOS, EOS, PAD, UNK

#: ``task.embeddings.format`` and ``task.embeddings.train`` (the config schema's choices)
FORMATS = ("word2vec_text", "word2vec_binary", "glove", "fasttext")
TRAINERS = ("word2vec", "fasttext")
SPECIALS = frozenset({PAD, UNK, BOS, EOS})
#: the settings of ``task.embeddings`` and their defaults (``sg`` and ``seed`` are optional
#: extras: ``+task.embeddings.sg=false`` trains CBOW)
DEFAULTS: dict[str, Any] = {"path": None, "format": None, "train": None, "corpus": None,
                            "dim": 100, "window": 5, "min_count": 1, "epochs": 5,
                            "freeze": False, "sg": True, "seed": 1}
GZIP_MAGIC = b"\x1f\x8b"
#: beside trained fastText vectors: the words whose vector came from character n-grams only
SUBWORD_LIST = "subword_only.txt"


@dataclass
class WordVectors:
    """The embedding matrix for one vocabulary and how it was filled."""

    matrix: torch.Tensor  # (len(vocab), dim) float32
    found: int            # vocabulary words (specials excluded) with a vector from the file
    by_lowercase: int     # of those, matched only after lowercasing
    total: int            # vocabulary words, specials excluded
    source: str
    by_subword: int = 0   # not found: vectors fastText composed from character n-grams

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def coverage(self) -> float:
        return self.found / self.total if self.total else 0.0


# ---- settings ------------------------------------------------------------------------------
def check_settings(conf: dict | None) -> dict[str, Any] | None:
    """``task.embeddings`` with defaults filled in, or None when it asks for no vectors.

    The config schema checks the settings it types (path/train exclusive, choices, sizes);
    the keys it leaves open are refused or checked here, before any data is read: an
    unknown key, and the gensim extras ``sg`` and ``seed``."""
    if not conf:
        return None
    unknown = sorted(set(conf) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"task.embeddings.{unknown[0]} is not a setting; the settings are "
                          f"{', '.join(DEFAULTS)}.")
    out = {**DEFAULTS, **{k: v for k, v in conf.items() if v is not None or k in
                          ("path", "format", "train", "corpus")}}
    if not out["path"] and not out["train"]:
        return None
    seed = out["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"task.embeddings.seed={seed!r} must be a whole number of at least 0.")
    if not isinstance(out["sg"], bool):
        raise ConfigError(f"task.embeddings.sg={out['sg']!r} must be true or false.")
    return out


def resolve_format(path: Path, fmt: str | None) -> str:
    """The file's format: ``fmt`` when given, else by extension (``.gz`` looked through),
    sniffing the first line of a ``.txt`` for a word2vec header."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"task.embeddings.format={fmt!r} is unknown; use one of "
                              f"{', '.join(FORMATS)}, or null to go by the file's extension.")
        return fmt
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".bin"):
        return "word2vec_binary"
    if name.endswith(".vec"):
        return "fasttext"
    if name.endswith(".txt"):
        with _open(path) as handle:
            first = handle.readline()
        return "word2vec_text" if _header(first) is not None else "glove"
    raise ConfigError(f"cannot tell the format of {path} from its extension; set "
                      f"task.embeddings.format to one of {', '.join(FORMATS)}.")


# ---- reading -------------------------------------------------------------------------------
def _open(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip (by its magic bytes, not its name)."""
    if not path.is_file():
        raise DataError(f"{path} does not exist (task.embeddings.path); check the path, "
                        f"relative paths start from the directory train.py runs in.")
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _header(line: bytes) -> tuple[int, int] | None:
    """(count, dim) when ``line`` is a word2vec header ``<count> <dim>``, else None."""
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _Matcher:
    """Collects the vectors of vocabulary words while the file streams past: exact
    matches always win; a lowercase match fills a word only while it has no exact one."""

    def __init__(self, words: Sequence[str]) -> None:
        self.stoi = {w: i for i, w in enumerate(words) if w not in SPECIALS}
        self.lower: dict[str, list[int]] = {}
        for w, i in self.stoi.items():
            self.lower.setdefault(w.lower(), []).append(i)
        self.exact: dict[int, np.ndarray] = {}
        self.fallback: dict[int, np.ndarray] = {}

    def wanted(self, word: str) -> tuple[int | None, list[int]]:
        """(id of the exact match still missing, ids still missing a lowercase match)."""
        i = self.stoi.get(word)
        exact = i if i is not None and i not in self.exact else None
        lows = [j for j in self.lower.get(word.lower(), ())
                if j != i and j not in self.fallback and j not in self.exact]
        return exact, lows

    def add(self, exact: int | None, lows: list[int], vector: np.ndarray) -> None:
        if exact is not None:
            self.exact[exact] = vector
        for j in lows:
            self.fallback[j] = vector

    def result(self) -> tuple[dict[int, np.ndarray], int]:
        """id -> vector, and how many came from the lowercase fallback."""
        merged = {**self.fallback, **self.exact}
        return merged, len(set(self.fallback) - set(self.exact))


def _parse_values(values: Sequence[str], path: Path, where: str) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float32)
    for k, text in enumerate(values):
        try:
            out[k] = float(text)
        except ValueError:
            raise DataError(f"{path}, {where}: value {k + 1} is {text!r}, not a number; the "
                            f"file is damaged or not a vectors file (re-download or re-export "
                            f"it).") from None
    if not np.isfinite(out).all():
        raise DataError(f"{path}, {where}: the vector holds a NaN or infinite value; re-export "
                        f"the vectors with finite numbers.")
    return out


def _read_text(path: Path, fmt: str, matcher: _Matcher) -> int:
    """Stream a text-format file into ``matcher``; returns the dimension."""
    with _open(path) as handle:
        first = handle.readline()
        if not first.strip():
            raise DataError(f"{path} is empty (or starts with a blank line); give a file of "
                            f"word vectors.")
        header = _header(first)
        lineno = 1
        expected_rows = None
        dim: int | None = None
        dim_from = ""
        if fmt in ("word2vec_text", "fasttext"):
            if header is None:
                raise DataError(f"{path}, line 1: expected the header '<count> <dim>' of the "
                                f"{fmt} format; for a file without one (GloVe) set "
                                f"task.embeddings.format=glove.")
            expected_rows, dim = header
            if dim < 1:
                raise DataError(f"{path}, line 1: the header gives dimension {dim}; the file "
                                f"is damaged.")
            dim_from = "the header (line 1) gives"
            lines: Iterable[bytes] = handle
        else:
            if header is not None:
                raise DataError(f"{path}, line 1 is a word2vec header "
                                f"'{first.decode('ascii').strip()}', but "
                                f"task.embeddings.format=glove reads files without one; use "
                                f"task.embeddings.format=word2vec_text (or null).")
            lineno = 0
            lines = _chain_first(first, handle)
        rows = 0
        for raw in lines:
            lineno += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}, line {lineno}: not valid UTF-8; re-export the "
                                f"vectors as UTF-8 text.") from None
            line = line.rstrip("\r\n").rstrip(" \t")
            if not line:
                continue
            # the word and a count of the values first: most rows are of words outside the
            # vocabulary, and only their shape is checked
            word, _, rest = line.partition(" ")
            n_values = rest.count(" ") + 1 if rest else 0
            if dim is None:  # GloVe: the first row fixes the dimension
                dim = n_values
                dim_from = "line 1 has"
                if dim < 1:
                    raise DataError(f"{path}, line {lineno}: a word without values; the file "
                                    f"is not a vectors file.")
            if n_values != dim:
                parts = line.split(" ")
                extra = parts[: len(parts) - dim]
                # a word with spaces (GloVe has a few, such as ". . .") keeps every extra
                # field non-numeric; a numeric one means the row has too many values
                if n_values < dim or all(_is_number(p) for p in extra[1:]):
                    raise DataError(f"{path}, line {lineno}: {n_values} values where "
                                    f"{dim_from} {dim}; the line is truncated or the file "
                                    f"mixes dimensions (re-download or re-export it).")
                word, rest = " ".join(extra), " ".join(parts[len(extra):])
            rows += 1
            exact, lows = matcher.wanted(word)
            if exact is not None or lows:
                matcher.add(exact, lows, _parse_values(rest.split(" "), path, f"line {lineno}"))
        if dim is None or rows == 0:
            raise DataError(f"{path} has no vectors (only a header); give a file of word "
                            f"vectors.")
        if expected_rows is not None and rows < expected_rows:
            raise DataError(f"{path} has {rows} vectors but its header (line 1) promises "
                            f"{expected_rows}; the file is truncated, download it again.")
        return dim


def _chain_first(first: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


class _ByteStream:
    """Buffered reads with a byte counter, for the binary format's records."""

    CHUNK = 1 << 20

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.buf = b""
        self.pos = 0
        self.offset = 0  # file offset of buf[0]

    @property
    def tell(self) -> int:
        return self.offset + self.pos

    def _more(self) -> bool:
        chunk = self.handle.read(self.CHUNK)
        if not chunk:
            return False
        self.offset += self.pos
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def skip_newlines(self) -> bool:
        """Skip the newline(s) some writers put after a vector; False at end of file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in b"\n\r":
                self.pos += 1
            if self.pos < len(self.buf):
                return True
            if not self._more():
                return False

    def until_space(self, limit: int) -> bytes | None:
        """Bytes up to the next space (consumed, space included); None at end of file or
        when no space comes within ``limit`` bytes."""
        start = 0
        while True:
            idx = self.buf.find(b" ", self.pos + start)
            if idx >= 0:
                word = self.buf[self.pos: idx]
                self.pos = idx + 1
                return word
            start = len(self.buf) - self.pos
            if start > limit or not self._more():
                return None

    def take(self, n: int) -> bytes | None:
        while len(self.buf) - self.pos < n:
            if not self._more():
                return None
        out = self.buf[self.pos: self.pos + n]
        self.pos += n
        return out


def _read_binary(path: Path, matcher: _Matcher) -> int:
    """Stream a word2vec binary file into ``matcher``; returns the dimension."""
    with _open(path) as handle:
        first = handle.readline()
        if not first.strip():
            raise DataError(f"{path} is empty; give a file of word vectors.")
        header = _header(first)
        if header is None:
            raise DataError(f"{path}: the first line is not the header '<count> <dim>' of the "
                            f"word2vec binary format; set task.embeddings.format to the "
                            f"file's real format.")
        count, dim = header
        stream = _ByteStream(handle)
        stream.offset = len(first)
        nbytes = 4 * dim
        for k in range(1, count + 1):
            if not stream.skip_newlines():
                raise DataError(f"{path} has {k - 1} vectors but its header promises {count}; "
                                f"the file is truncated, download it again.")
            where = f"vector {k} (byte {stream.tell})"
            raw = stream.until_space(limit=1 << 16)
            if raw is None:
                raise DataError(f"{path}, {where}: the word never ends (no space before the "
                                f"end of the file); the file is truncated or not word2vec "
                                f"binary.")
            try:
                word = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}, {where}: the word {raw[:40]!r} is not valid UTF-8; "
                                f"re-export the vectors with UTF-8 words.") from None
            values = stream.take(nbytes)
            if values is None:
                raise DataError(f"{path}, {where}: the file ends inside this vector's {dim} "
                                f"values; the file is truncated, download it again.")
            if k == 1 and _looks_like_text(word, values):
                raise DataError(f"{path} holds text where word2vec binary has float32 bytes; "
                                f"it is a text file, so set task.embeddings.format="
                                f"word2vec_text (or name it .txt / .vec).")
            exact, lows = matcher.wanted(word)
            if exact is not None or lows:
                vector = np.frombuffer(values, dtype="<f4").astype(np.float32)
                if not np.isfinite(vector).all():
                    raise DataError(f"{path}, {where}: the vector holds a NaN or infinite "
                                    f"value; re-export the vectors with finite numbers.")
                matcher.add(exact, lows, vector)
        if count == 0:
            raise DataError(f"{path} has no vectors (its header counts 0); give a file of "
                            f"word vectors.")
        return dim


def _looks_like_text(word: str, values: bytes) -> bool:
    """A text file read as binary: the 'float32 bytes' are ASCII digits and spaces."""
    return all(b in b"0123456789.-+eE \n" for b in values[:32])


def read_vectors(path: str | Path, words: Sequence[str], fmt: str | None = None
                 ) -> tuple[dict[int, np.ndarray], int, int]:
    """Stream ``path`` and keep the vectors of ``words`` (ids = positions in ``words``).

    Returns (id -> vector, dimension, how many matched only after lowercasing)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist (task.embeddings.path); check the path, "
                        f"relative paths start from the directory train.py runs in.")
    fmt = resolve_format(path, fmt)
    matcher = _Matcher(words)
    try:
        dim = (_read_binary(path, matcher) if fmt == "word2vec_binary"
               else _read_text(path, fmt, matcher))
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"{path} cannot be read ({err}); a damaged or truncated download, "
                        f"so fetch the file again.") from None
    found, by_lower = matcher.result()
    return found, dim, by_lower


def init_matrix(found: dict[int, np.ndarray], size: int, dim: int, pad_id: int | None,
                seed: int) -> torch.Tensor:
    """The (size, dim) matrix: found rows as read, every other row drawn from
    N(mean, std) per dimension of the found rows (seeded), the padding row zero."""
    ids = sorted(found)
    known = torch.from_numpy(np.stack([found[i] for i in ids])) if ids else torch.zeros(0, dim)
    mean = known.mean(0)
    std = known.std(0, unbiased=False) if len(ids) > 1 else torch.zeros(dim)
    gen = torch.Generator().manual_seed(int(seed))
    matrix = mean + std * torch.randn(size, dim, generator=gen)
    if ids:
        matrix[torch.tensor(ids)] = known
    if pad_id is not None and 0 <= pad_id < size:
        matrix[pad_id] = 0.0
    return matrix.float().contiguous()


def subword_words(path: str | Path) -> set[str]:
    """The words of a trained fastText file whose vectors came from character n-grams only
    (its ``subword_only.txt``; none for any other file)."""
    listed = Path(path).expanduser().with_name(SUBWORD_LIST)
    return set(listed.read_text(encoding="utf-8").splitlines()) if listed.is_file() else set()


def load_vectors(path: str | Path, words: Sequence[str], pad_id: int | None = 0,
                 fmt: str | None = None, seed: int = 0, source: str | None = None) -> WordVectors:
    """The embedding matrix for the vocabulary ``words`` from the vectors file ``path``;
    fastText's n-gram-only vectors fill their rows but do not count as found."""
    found, dim, by_lower = read_vectors(path, words, fmt)
    total = sum(1 for w in words if w not in SPECIALS)
    subword = subword_words(path)
    by_subword = sum(1 for i in found if words[i] in subword)
    if not found:
        raise DataError(f"{path}: none of the {total} vocabulary words was found in it, even "
                        f"after lowercasing; the file is for other text (another language, "
                        f"tokenisation or encoding), so use vectors that match the corpus.")
    return WordVectors(init_matrix(found, len(words), dim, pad_id, seed),
                       len(found) - by_subword, by_lower, total, source or str(path), by_subword)


# ---- training with gensim ------------------------------------------------------------------
class CorpusFile:
    """The sentences of a UTF-8 text file, one per line, split by ``split_line``; can be
    iterated again and again (gensim reads it once per epoch) without holding it in memory."""

    def __init__(self, path: str | Path, split_line: Callable[[str], list[str]]) -> None:
        self.path = Path(path).expanduser()
        self.split_line = split_line
        if not self.path.is_file():
            raise DataError(f"{self.path} does not exist (task.embeddings.corpus); give a UTF-8 "
                            f"text file, one sentence per line.")

    def __iter__(self) -> Iterator[list[str]]:
        with _open(self.path) as handle:
            for lineno, raw in enumerate(handle, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{self.path}, line {lineno}: not valid UTF-8 "
                                    f"(task.embeddings.corpus); convert the file to UTF-8."
                                    ) from None
                tokens = self.split_line(line)
                if tokens:
                    yield tokens


def corpus_digest(sentences: Iterable[list[str]]) -> tuple[str, int, int]:
    """(sha256 of the tokenised corpus, sentences, tokens): the corpus part of the cache key,
    taken after tokenisation so that lowercasing or character splitting change it too."""
    h = hashlib.sha256()
    n_sent = n_tok = 0
    for sent in sentences:
        h.update(json.dumps(sent, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
        n_sent += 1
        n_tok += len(sent)
    return h.hexdigest(), n_sent, n_tok


def gensim_version() -> str:
    try:
        # gensim: heavy, only to train vectors here
        import gensim
    except ImportError:
        raise ConfigError("task.embeddings.train needs gensim, which is not installed; "
                          "pip install gensim==4.4.0 (or reinstall rnnlab).") from None
    return str(gensim.__version__)


def _train_gensim(sentences: Iterable[list[str]], settings: dict[str, Any],
                  extra_words: Sequence[str]) -> tuple[list[str], np.ndarray, list[str]]:
    """Train with gensim; returns (words, vectors, the words of them that have only
    fastText's n-gram vectors). One worker thread and a fixed seed:
    with more threads the order in which sentences update the vectors varies from run to
    run, and the same corpus would give different vectors."""
    # gensim: heavy, only to train vectors here
    from gensim.models import FastText, Word2Vec

    cls = Word2Vec if settings["method"] == "word2vec" else FastText
    quiet = logging.getLogger("gensim")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # gensim's INFO lines (progress per 1% of a pass)
    try:
        model = cls(vector_size=settings["dim"], window=settings["window"],
                    min_count=settings["min_count"], sg=1 if settings["sg"] else 0,
                    seed=settings["seed"], workers=1)
        model.build_vocab(sentences)
        if not model.wv.index_to_key:
            raise DataError(f"no word occurs {settings['min_count']} times in the corpus, so "
                            f"gensim has nothing to train; lower task.embeddings.min_count.")
        model.train(sentences, total_examples=model.corpus_count, epochs=settings["epochs"])
    finally:
        quiet.setLevel(level)
    words = list(model.wv.index_to_key)
    vectors = np.asarray(model.wv.vectors, dtype=np.float32)
    more: list[str] = []
    if settings["method"] == "fasttext":  # subword vectors for vocabulary words it never saw
        seen = set(words)
        more = [w for w in extra_words if w not in seen and w not in SPECIALS]
        if more:
            vectors = np.concatenate([vectors, np.stack([model.wv[w] for w in more])])
            words += more
    return words, vectors, more


def word2vec_text(words: Sequence[str], vectors: np.ndarray) -> bytes:
    """The word2vec text format: a ``<count> <dim>`` header, then one word and its values
    per line (6 significant digits: float32 holds about 7)."""
    dim = vectors.shape[1]
    row = " ".join(["%.6g"] * dim)
    keep = [(w, v) for w, v in zip(words, vectors, strict=True)
            if w and not any(c in w for c in " \n\r")]
    buf = io.StringIO()
    buf.write(f"{len(keep)} {dim}\n")
    for word, vec in keep:
        buf.write(f"{word} {row % tuple(vec.tolist())}\n")
    return buf.getvalue().encode("utf-8")


def trained_vectors(sentences: Iterable[list[str]], settings: dict[str, Any], data_dir: Path,
                    extra_words: Sequence[str] = (), describe: str = "the training text"
                    ) -> tuple[Path, str]:
    """Vectors trained on ``sentences`` (re-iterable), cached under
    ``<data_dir>/prepared/embeddings-<fingerprint>/vectors.txt``; returns (file, fingerprint).

    ``settings``: method (word2vec | fasttext), dim, window, min_count, epochs, sg, seed.
    Skip-gram is the default (``sg=True``): it predicts the context from each word, so
    rare words get as many updates as they have neighbours, which is what small task
    corpora full of rare words need; CBOW averages the context and favours frequent
    words (Mikolov et al. 2013 report skip-gram ahead on semantic similarity)."""
    version = gensim_version()
    digest, n_sent, n_tok = corpus_digest(sentences)
    if n_tok == 0:
        raise DataError(f"{describe} has no tokens to train word vectors on; give a corpus "
                        f"with text (task.embeddings.corpus).")
    keys = {k: settings[k] for k in ("method", "dim", "window", "min_count", "epochs", "sg",
                                     "seed")}
    # fastText also writes subword vectors of the vocabulary's unseen words: they are in
    # the file, so they are in the key
    extra = sorted(extra_words) if keys["method"] == "fasttext" else []
    # "subword-listed": caches from before subword_only.txt are not reused (they lack it)
    fp = fingerprint("embeddings", keys, "workers=1", f"gensim=={version}", digest, extra,
                     "subword-listed")
    prepared = Path(data_dir) / "prepared"
    out = prepared / f"embeddings-{fp}" / "vectors.txt"
    with file_lock(prepared / f"embeddings-{fp}.lock"):
        if out.exists():
            say(f"word vectors: {keys['method']} vectors of {describe} read from the cache "
                 f"{out}")
            return out, fp
        algo = "skip-gram" if keys["sg"] else "CBOW"
        say(f"word vectors: training {keys['method']} ({algo}, dim {keys['dim']}, window "
             f"{keys['window']}, {keys['epochs']} epochs) on {describe}: {n_sent:,} sentences, "
             f"{n_tok:,} tokens")
        words, vectors, subword = _train_gensim(sentences, keys, extra)
        write_once(out.with_name(SUBWORD_LIST), "".join(f"{w}\n" for w in subword).encode())
        write_once(out, word2vec_text(words, vectors))
    return out, fp


def say(message: str) -> None:
    """Print a progress line once (rank zero only), on stderr beside the run's own lines."""
    if is_rank_zero():
        print(message, file=sys.stderr, flush=True)


def report(vectors: WordVectors) -> str:
    """The coverage line printed when vectors are loaded."""
    missing = vectors.total - vectors.found - vectors.by_subword
    lower = f" ({vectors.by_lowercase:,} only after lowercasing)" if vectors.by_lowercase else ""
    pct = math.floor(1000 * vectors.coverage) / 10
    subword = (f"; {vectors.by_subword:,} not in the corpus composed from fastText's "
               f"character n-grams" if vectors.by_subword else "")
    rest = (f"; the other {missing:,} drawn from the found vectors' mean and spread"
            if missing else "")
    return (f"word vectors: {vectors.found:,} of {vectors.total:,} vocabulary words ({pct}%) "
            f"found in {vectors.source}{lower}{subword}{rest}; dim {vectors.dim}")
