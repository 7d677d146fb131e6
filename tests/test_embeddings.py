"""Word vectors for the embedding layer: every file format, coverage, the initialisation of
missing words, freeze, each malformed file, and vectors trained here with gensim (cached)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from helpers import write_sentiment_csv
from mlflow.tracking import MlflowClient

from rnnlab.build import apply_embeddings, build_module
from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data import embeddings as emb
from rnnlab.data.base import RnnlabDataModule
from rnnlab.data.sentiment import SentimentDataModule
from rnnlab.data.vocab import Vocabulary
from rnnlab.run.train import run

RNG = np.random.default_rng(0)
WORDS = ["the", "movie", "Paris", "good", "bad"]
VECS = {w: RNG.normal(size=4).astype(np.float32) for w in WORDS}
# a vocabulary as the datamodules build it: specials first, then words; "paris" is only in
# the file as "Paris" (lowercase fallback), "unseen" is in no file
VOCAB = ["<pad>", "<unk>", "the", "movie", "paris", "good", "bad", "unseen"]


def _row(word: str, vec: np.ndarray) -> str:
    return " ".join([word, *(repr(float(v)) for v in vec)])


def write_text(path: Path, header: bool = True, words: list[str] = WORDS) -> Path:
    lines = ([f"{len(words)} 4"] if header else []) + [_row(w, VECS[w]) for w in words]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_binary(path: Path, words: list[str] = WORDS, newline: bool = True) -> Path:
    out = f"{len(words)} 4\n".encode()
    for w in words:
        out += w.encode("utf-8") + b" " + VECS[w].astype("<f4").tobytes() + (b"\n" if newline else b"")
    path.write_bytes(gzip.compress(out) if path.suffix == ".gz" else out)
    return path


# ---- reading ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "writer", "fmt", "expected_format"), [
    ("w2v.txt", lambda p: write_text(p, header=True), None, "word2vec_text"),
    ("glove.txt", lambda p: write_text(p, header=False), None, "glove"),
    ("wiki.vec", lambda p: write_text(p, header=True), None, "fasttext"),
    ("vectors.bin", write_binary, None, "word2vec_binary"),
    ("gensim.bin", lambda p: write_binary(p, newline=False), None, "word2vec_binary"),
    ("glove.txt.gz", lambda p: write_text(p, header=False), None, "glove"),
    ("w2v.bin.gz", write_binary, None, "word2vec_binary"),
    ("vectors.data", lambda p: write_text(p, header=False), "glove", "glove"),
])
def test_each_format_loads_the_files_vectors(tmp_path: Path, name, writer, fmt,
                                             expected_format) -> None:
    path = writer(tmp_path / name)
    assert emb.resolve_format(path, fmt) == expected_format
    vectors = emb.load_vectors(path, VOCAB, pad_id=0, fmt=fmt, seed=3)
    m = vectors.matrix
    assert m.shape == (len(VOCAB), 4) and m.dtype == torch.float32
    for word in ("the", "movie", "good", "bad"):
        assert torch.equal(m[VOCAB.index(word)], torch.from_numpy(VECS[word]))
    assert torch.equal(m[VOCAB.index("paris")], torch.from_numpy(VECS["Paris"]))  # lowercase
    assert torch.equal(m[0], torch.zeros(4))  # <pad>
    # 5 of the 6 words (specials excluded) found, one of them only after lowercasing
    assert (vectors.found, vectors.total, vectors.by_lowercase) == (5, 6, 1)
    assert vectors.coverage == pytest.approx(5 / 6) and vectors.dim == 4


def test_exact_match_wins_over_lowercase_and_first_duplicate_wins(tmp_path: Path) -> None:
    a, b, c = (np.full(3, v, dtype=np.float32) for v in (1.0, 2.0, 3.0))
    path = tmp_path / "v.txt"
    path.write_text(f"Apple {' '.join(['1.0'] * 3)}\napple {' '.join(['2.0'] * 3)}\n"
                    f"apple {' '.join(['3.0'] * 3)}\n")
    found, dim, by_lower = emb.read_vectors(path, ["<pad>", "apple", "APPLE"])
    assert dim == 3 and np.array_equal(found[1], b)  # exact "apple", not "Apple" seen first
    assert np.array_equal(found[2], a) and by_lower == 1  # "APPLE": first lowercase match
    assert not any(np.array_equal(v, c) for v in found.values())


def test_missing_words_are_drawn_from_the_found_vectors_spread() -> None:
    found = {2: np.array([1.0, -2.0], dtype=np.float32), 3: np.array([3.0, 2.0], dtype=np.float32)}
    m = emb.init_matrix(found, 6, 2, pad_id=0, seed=5)
    again = emb.init_matrix(found, 6, 2, pad_id=0, seed=5)
    other = emb.init_matrix(found, 6, 2, pad_id=0, seed=6)
    assert torch.equal(m, again) and not torch.equal(m[4:], other[4:])
    assert torch.equal(m[2:4], other[2:4]) and torch.equal(m[0], torch.zeros(2))
    # many draws: per-dimension mean (2, 0) and std (1, 2) of the two found vectors
    big = emb.init_matrix(found, 20000, 2, pad_id=None, seed=0)[4:]
    assert big.mean(0).tolist() == pytest.approx([2.0, 0.0], abs=0.05)
    assert big.std(0).tolist() == pytest.approx([1.0, 2.0], abs=0.05)
    # one found vector (no spread): the missing rows are that vector
    single = emb.init_matrix({1: np.array([0.5, 0.25], dtype=np.float32)}, 3, 2, 0, seed=0)
    assert single[2].tolist() == [0.5, 0.25]


# ---- malformed files -------------------------------------------------------------------------
def _bin(header: bytes, *records: bytes) -> bytes:
    return header + b"".join(records)


REC = b"the " + np.ones(2, dtype="<f4").tobytes() + b"\n"

BAD_FILES = [
    ("short.txt", b"3 4\nthe 1 2 3 4\nmovie 1 2 3\nbad 1 2 3 4\n",
     r"short\.txt, line 3: 3 values where the header \(line 1\) gives 4; the line is truncated"),
    ("long.txt", b"the 1 2 3 4\nmovie 1 2 3 4 5\n",
     r"long\.txt, line 2: 5 values where line 1 has 4"),
    ("nan.txt", b"the 1 2 x3 4\n", r"nan\.txt, line 1: value 3 is 'x3', not a number"),
    ("inf.vec", b"1 2\nthe inf 1\n", r"inf\.vec, line 2: the vector holds a NaN or infinite"),
    ("latin1.txt", b"2 2\nthe 1 2\ncaf\xe9 1 2\n", r"latin1\.txt, line 3: not valid UTF-8"),
    ("empty.txt", b"", r"empty\.txt is empty"),
    ("headonly.vec", b"0 4\n", r"headonly\.vec has no vectors"),
    ("cut.vec", b"3 2\nthe 1 2\nmovie 1 2\n",
     r"cut\.vec has 2 vectors but its header \(line 1\) promises 3; the file is truncated"),
    ("noheader.vec", b"the 1 2\n", r"noheader\.vec, line 1: expected the header"),
    ("latin1.bin", _bin(b"2 2\n", REC, b"caf\xe9 " + np.ones(2, dtype="<f4").tobytes()),
     r"latin1\.bin, vector 2 \(byte 17\): the word b'caf\\xe9' is not valid UTF-8"),
    ("cut.bin", _bin(b"2 2\n", REC, b"movie " + b"\x00" * 5),
     r"cut\.bin, vector 2 \(byte 17\): the file ends inside this vector's 2 values"),
    ("few.bin", _bin(b"3 2\n", REC, REC), r"few\.bin has 2 vectors but its header promises 3"),
    ("text.bin", b"1 2\nthe 0.5 0.25 0.125\n", r"text\.bin holds text where word2vec binary"),
    ("unrelated.txt", b"zebra 1 2\nyak 3 4\n",
     r"unrelated\.txt: none of the 6 vocabulary words was found in it, even after lowercasing"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES,
                         ids=[b[0] for b in BAD_FILES])
def test_malformed_files_name_file_line_and_fix(tmp_path: Path, name: str, content: bytes,
                                                message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        emb.load_vectors(path, VOCAB)


def test_missing_file_and_bad_format_values(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothere\.txt does not exist \(task\.embeddings\.path\)"):
        emb.load_vectors(tmp_path / "nothere.txt", VOCAB)
    path = write_text(tmp_path / "v.txt")
    with pytest.raises(ConfigError, match=r"task\.embeddings\.format='word2vec' is unknown"):
        emb.load_vectors(path, VOCAB, fmt="word2vec")
    other = write_text(tmp_path / "v.emb")
    with pytest.raises(ConfigError, match=r"cannot tell the format of .*v\.emb from its extension"):
        emb.load_vectors(other, VOCAB)
    with pytest.raises(DataError, match=r"line 1 is a word2vec header '5 4', but "
                                        r"task\.embeddings\.format=glove"):
        emb.load_vectors(path, VOCAB, fmt="glove")


@pytest.mark.parametrize(("conf", "message"), [  # the typed settings: test_schema.py
    ({"path": "a.txt", "size": 3}, r"task\.embeddings\.size is not a setting"),
    ({"train": "word2vec", "seed": -1}, r"task\.embeddings\.seed=-1 must be a whole number"),
    ({"train": "word2vec", "sg": "no"}, r"task\.embeddings\.sg='no' must be true or false"),
])
def test_bad_settings_are_refused_before_reading(conf: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SentimentDataModule(data={"train": "unread.csv"}, embeddings=conf)


# ---- the datamodule, build_module and freeze -------------------------------------------------
def _sentiment_vectors(path: Path, dim: int = 4, words: tuple[str, ...] = ()) -> Path:
    """Vectors for the 10 filler words of conftest's corpus, plus ``words`` ("Good": a
    lowercase match for "good")."""
    filler = ["the", "movie", "film", "was", "a", "plot", "and", "actors", "story", "it"]
    rng = np.random.default_rng(1)
    rows = [f"{w} " + " ".join(f"{x:.5f}" for x in rng.normal(size=dim))
            for w in [*filler, *words]]
    path.write_text(f"{len(rows)} {dim}\n" + "\n".join(rows) + "\n")
    return path


def test_datamodule_spec_describe_and_printed_coverage(tmp_path: Path, sentiment_csv: Path,
                                                       capsys) -> None:
    vec = _sentiment_vectors(tmp_path / "v.txt", words=("Good",))
    dm = SentimentDataModule(data={"train": str(sentiment_csv)}, data_dir=str(tmp_path),
                             embeddings={"path": str(vec), "freeze": True})
    dm.setup()
    assert len(dm.vocab) == 24  # 22 words and <pad>, <unk>
    assert dm.spec.embeddings.shape == (24, 4) and dm.spec.freeze_embeddings is True
    info = dm.describe()
    assert info["embeddings_coverage"] == 0.5 and info["embeddings_dim"] == 4
    assert info["embeddings_source"] == str(vec)
    assert "word vectors: 11 of 22 vocabulary words (50.0%) found in" in capsys.readouterr().err
    assert dm.training_texts()[0] == dm.vocab.decode(dm.datasets["train"][0][0].tolist())
    assert dm.spec.unk_id == 1 and len(dm.spec.token_counts) == 24
    assert dm.spec.token_counts[:2] == [0, 0] and min(dm.spec.token_counts[2:]) >= 2
    plain = SentimentDataModule(data={"train": str(sentiment_csv)}, data_dir=str(tmp_path))
    plain.setup()
    assert plain.spec.embeddings is None and "embeddings_coverage" not in plain.describe()


def _fit(make_config, dm: SentimentDataModule, *overrides: str) -> tuple[torch.Tensor, ...]:
    cfg = make_config("model=gru", "model.hidden_size=8", *overrides)
    module = build_module(cfg, dm.spec)
    table = module.backbone.embedding
    before = table.weight.detach().clone()
    rnn_before = [p.detach().clone() for n, p in module.named_parameters() if "rnn" in n]
    trainer = pl.Trainer(max_steps=5, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    rnn_after = [p.detach() for n, p in module.named_parameters() if "rnn" in n]
    assert any(not torch.equal(a, b) for a, b in zip(rnn_before, rnn_after, strict=True))
    return before, table.weight.detach().clone()


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_keeps_the_vectors_fixed_while_training(make_config, tmp_path: Path,
                                                       sentiment_csv: Path, freeze: bool) -> None:
    vec = _sentiment_vectors(tmp_path / "v.txt")
    dm = SentimentDataModule(data={"train": str(sentiment_csv)}, data_dir=str(tmp_path),
                             batch_size=16, embeddings={"path": str(vec), "freeze": freeze})
    dm.setup()
    before, after = _fit(make_config, dm, "model.embedding_dim=4")
    assert torch.equal(before, dm.spec.embeddings)  # the model starts from the vectors
    assert torch.equal(before, after) is freeze


def test_dimension_mismatch_and_a_model_without_embedding_are_refused(
        make_config, tmp_path: Path, sentiment_csv: Path) -> None:
    vec = _sentiment_vectors(tmp_path / "v.txt")
    dm = SentimentDataModule(data={"train": str(sentiment_csv)}, data_dir=str(tmp_path),
                             embeddings={"path": str(vec)})
    dm.setup()
    with pytest.raises(ConfigError, match=r"the word vectors have 4 dimensions but "
                                          r"model\.embedding_dim=16; set model\.embedding_dim=4"):
        build_module(make_config("model=gru", "model.embedding_dim=16"), dm.spec)
    with pytest.raises(ConfigError, match=r"model=gru has no token embedding"):
        apply_embeddings(make_config("model=gru"), torch.nn.Linear(2, 2), dm.spec)


def test_tiny_run_logs_the_coverage_param(make_config, tmp_path: Path, lab_root: Path) -> None:
    data = write_sentiment_csv(tmp_path / "reviews.csv", n=80)
    vec = _sentiment_vectors(tmp_path / "v.txt", dim=8, words=("Good",))
    metrics = run(make_config("experiment=sentiment_tiny", "model=gru", "model.hidden_size=8",
                              "model.embedding_dim=8", f"task.data.train={data}",
                              f"task.embeddings.path={vec}", "logger.mlflow.log_model=false"))
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    exp = client.get_experiment_by_name("sentiment")
    (r,) = client.search_runs([exp.experiment_id])
    assert r.data.params["data.embeddings_coverage"] == "0.5"
    assert r.data.params["data.embeddings_dim"] == "8"
    assert r.data.params["task.embeddings.freeze"] == "False"
    assert not client.list_artifacts(r.info.run_id, "embeddings")  # nothing trained here
    # the vectors are in the weights, not a second time in the checkpoint's metadata
    meta = torch.load(metrics["ckpt_path"], weights_only=True)["rnnlab"]
    assert "embeddings" not in meta["spec"] and meta["spec"]["vocab_size"] > 2


# ---- vectors trained here ----------------------------------------------------------------------
def _settings(**kw) -> dict:
    return {**emb.DEFAULTS, "method": "word2vec", "dim": 8, "epochs": 5, **kw}


def test_gensim_training_writes_the_vocabulary_and_is_cached(tmp_path: Path, sentiment_csv: Path,
                                                             monkeypatch) -> None:
    dm = SentimentDataModule(data={"train": str(sentiment_csv)}, data_dir=str(tmp_path / "data"),
                             embeddings={"train": "word2vec", "dim": 8})
    dm.setup()
    path = dm.embeddings_artifact
    assert path is not None and path.parent.parent == tmp_path / "data" / "prepared"
    assert path.name == "vectors.txt" and path.parent.name.startswith("embeddings-")
    assert path.read_text().splitlines()[0] == "22 8"
    assert dm.describe()["embeddings_coverage"] == 1.0
    assert dm.describe()["embeddings_source"].startswith("word2vec vectors of the training text")
    first = path.read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of reading the cache")

    monkeypatch.setattr(emb, "_train_gensim", no_training)
    again = SentimentDataModule(data={"train": str(sentiment_csv)},
                                data_dir=str(tmp_path / "data"),
                                embeddings={"train": "word2vec", "dim": 8})
    again.setup()  # same corpus, same settings: read from the cache
    assert again.embeddings_artifact == path and path.read_bytes() == first
    assert torch.equal(again.spec.embeddings[2:], dm.spec.embeddings[2:])
    changed = SentimentDataModule(data={"train": str(sentiment_csv)},
                                  data_dir=str(tmp_path / "data"),
                                  embeddings={"train": "word2vec", "dim": 8, "window": 2})
    with pytest.raises(AssertionError, match="trained again"):  # a setting is in the key
        changed.setup()


def test_training_is_reproducible(tmp_path: Path) -> None:
    sents = [["a", "b", "c", "d"], ["b", "c", "e"], ["a", "e", "d"]] * 20
    one, fp1 = emb.trained_vectors(sents, _settings(), tmp_path / "one")
    two, fp2 = emb.trained_vectors(sents, _settings(), tmp_path / "two")
    assert fp1 == fp2 and one.read_bytes() == two.read_bytes()
    _, fp3 = emb.trained_vectors(sents, _settings(sg=False), tmp_path / "one")
    _, fp4 = emb.trained_vectors(sents[:-1], _settings(), tmp_path / "one")
    assert len({fp1, fp3, fp4}) == 3  # the algorithm and the corpus are in the key


def _cosine(m: dict[str, np.ndarray], a: str, b: str) -> float:
    return float(m[a] @ m[b] / np.linalg.norm(m[a]) / np.linalg.norm(m[b]))


def test_words_that_share_contexts_end_up_closer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    animals, vehicles = ["cat", "dog", "horse", "cow"], ["car", "bus", "truck", "train"]
    lines = []
    for _ in range(2000):  # gensim downsamples frequent words, and here every word is
        group, ctx = ((animals, ["feed", "pet", "farm", "fur"]) if rng.random() < 0.5
                      else (vehicles, ["drive", "road", "fuel", "wheel"]))
        lines.append(" ".join([*rng.choice(ctx, 2), rng.choice(group), *rng.choice(ctx, 2)]))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    sents = emb.CorpusFile(corpus, str.split)
    path, _ = emb.trained_vectors(sents, _settings(dim=16, epochs=10, window=2), tmp_path)
    found, _, _ = emb.read_vectors(path, [*animals, *vehicles])
    m = {w: found[i] for i, w in enumerate([*animals, *vehicles])}
    same = np.mean([_cosine(m, a, b) for g in (animals, vehicles) for a in g for b in g if a < b])
    across = np.mean([_cosine(m, a, v) for a in animals for v in vehicles])
    assert same > across + 0.4  # measured: 0.99 against 0.31


def test_corpus_file_fasttext_subwords_and_char_level_splitting(tmp_path: Path,
                                                                sentiment_csv: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The movie was a film\nthe plot and the actors\n" * 30)
    conf = {"corpus": str(corpus), "dim": 8, "min_count": 1}
    w2v = SentimentDataModule(data={"train": str(sentiment_csv)}, data_dir=str(tmp_path),
                              embeddings={**conf, "train": "word2vec"})
    w2v.setup()
    # 8 of the 22 vocabulary words are in the corpus ("The" lowercased like the reviews)
    assert w2v.describe()["embeddings_coverage"] == round(8 / 22, 4)
    ft = SentimentDataModule(data={"train": str(sentiment_csv)}, data_dir=str(tmp_path),
                             embeddings={**conf, "train": "fasttext"})
    ft.setup()  # fastText composes vectors for the other words from their character n-grams
    # used, but not counted as found: coverage is the corpus's, the 14 others said apart
    assert ft.describe()["embeddings_coverage"] == round(8 / 22, 4)
    assert (ft.word_vectors.found, ft.word_vectors.by_subword) == (8, 14)
    assert "14 not in the corpus composed from fastText's character n-grams" in \
        emb.report(ft.word_vectors)
    dm = RnnlabDataModule()
    dm.char_level, dm.lowercase = True, False
    assert dm.corpus_tokens("北京 欢迎你\n") == ["北", "京", "欢", "迎", "你"]
    dm.char_level, dm.lowercase = False, True
    assert dm.corpus_tokens("Hello  World\n") == ["hello", "world"]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbad \xff line\n")
    with pytest.raises(DataError, match=r"bad\.txt, line 2: not valid UTF-8 "
                                        r"\(task\.embeddings\.corpus\)"):
        emb.trained_vectors(emb.CorpusFile(bad, str.split), _settings(), tmp_path)


def test_tiny_run_with_trained_vectors_logs_them_as_an_artifact(make_config, tmp_path: Path,
                                                                lab_root: Path) -> None:
    data = write_sentiment_csv(tmp_path / "reviews.csv", n=80)
    run(make_config("experiment=sentiment_tiny", "model=gru", "model.hidden_size=8",
                    "model.embedding_dim=8", f"task.data.train={data}",
                    "task.embeddings.train=word2vec", "logger.mlflow.log_model=false"))
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    (r,) = client.search_runs([client.get_experiment_by_name("sentiment").experiment_id])
    assert [a.path for a in client.list_artifacts(r.info.run_id, "embeddings")] == [
        "embeddings/vectors.txt"]
    assert r.data.params["data.embeddings_coverage"] == "1.0"
    assert r.data.params["data.embeddings_dim"] == "8"


def test_vocabulary_counts() -> None:
    vocab = Vocabulary.build([["a", "b", "a"], ["a", "c"]], min_freq=1)
    assert vocab.itos == ["<pad>", "<unk>", "a", "b", "c"] and vocab.counts == [0, 0, 3, 1, 1]
    assert Vocabulary.from_dict(vocab.to_dict()).counts == [0] * 5
    assert Vocabulary(["x"]).counts == [0, 0, 0]


@pytest.mark.parametrize("bad", ["truncated", "size"])
def test_bad_vectors_stop_the_command_before_any_run(make_config, tmp_path: Path,
                                                     lab_root: Path, bad: str) -> None:
    """A malformed file or vectors of another size: one sentence, and no run recorded."""
    data = write_sentiment_csv(tmp_path / "reviews.csv", n=80)
    vec = _sentiment_vectors(tmp_path / "v.txt", dim=8, words=("Good",))
    if bad == "truncated":
        lines = vec.read_text().splitlines()
        lines[1] = " ".join(lines[1].split()[:-2])  # a row missing two values
        vec.write_text("\n".join(lines) + "\n")
    error, message = {"truncated": (DataError, r"v\.txt, line 2"),
                      "size": (ConfigError, r"8 dimensions but model\.embedding_dim=16")}[bad]
    with pytest.raises(error, match=message):
        run(make_config("experiment=sentiment_tiny", "model=gru", "model.hidden_size=8",
                        "model.embedding_dim=16" if bad == "size" else "model.embedding_dim=8",
                        f"task.data.train={data}", f"task.embeddings.path={vec}"))
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    exp = client.get_experiment_by_name("sentiment")
    assert exp is None or not client.search_runs([exp.experiment_id])
