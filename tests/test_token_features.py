"""Token features into the backbone (char-CNN, case, character bigrams) and word dropout.

The features are encoded by one function (``SentenceEncoder``) for training batches,
``rnnlab-tag`` and the served model, so a checkpoint tags exactly as its module did.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import FAST, write_conll
from torch import nn

from rnnlab.cli.tag import main as tag_main
from rnnlab.core.errors import ConfigError
from rnnlab.data.ner import (
    CASE_CLASSES,
    NerDataModule,
    SentenceEncoder,
    case_class,
    token_bigrams,
)
from rnnlab.data.spec import ClassifySpec, DataSpec, TagSpec
from rnnlab.data.vocab import Vocabulary
from rnnlab.inference import load_checkpoint
from rnnlab.models import RecurrentEncoder, TransformerEncoder
from rnnlab.run.train import run
from rnnlab.serving.predictors import Tagger
from rnnlab.tasks.base import WordDropout
from rnnlab.tasks.classification import ClassificationTask
from rnnlab.tasks.tagging import TaggingTask

PEOPLE = ["张伟", "李娜", "王芳", "刘洋"]
PLACES = ["北京", "上海", "广州", "深圳"]
FILLER = list("今天我们在说了去和的是有")


def write_char_conll(path: Path, n: int = 120, seed: int = 0) -> Path:
    """A learnable Chinese corpus, one character per line (the MSRA layout)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        segments = [[(c, "O")] for c in rng.sample(FILLER, rng.randint(1, 4))]
        for names, typ in ((PEOPLE, "PER"), (PLACES, "LOC")):
            name = rng.choice(names)
            segments.append([(c, ("B-" if i == 0 else "I-") + typ) for i, c in enumerate(name)])
        rng.shuffle(segments)
        lines += [f"{c}\t{t}" for seg in segments for c, t in seg] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _optimizer(params):
    return torch.optim.SGD(params, lr=0.1)


# ---- encoding ------------------------------------------------------------------------------
def test_case_classes_of_raw_tokens() -> None:
    got = {t: CASE_CLASSES[case_class(t)] for t in
           ["1996", "1,000.5", "paris", "NATO", "Paris", "A4x", "1st", "iPhone", ",", "北京",
            "don't"]}
    assert got == {"1996": "numeric", "1,000.5": "mainly_numeric", "paris": "lower",
                   "NATO": "upper", "Paris": "title", "A4x": "has_digit", "1st": "has_digit",
                   "iPhone": "other",
                   ",": "other", "北京": "other", "don't": "lower"}


def test_bigrams_have_sentence_markers() -> None:
    assert token_bigrams(list("北京人")) == [["北 京"], ["京 人"], ["人 </s>"]]
    assert token_bigrams(list("北京"), "both") == [["北 京", "<s> 北"], ["京 </s>", "北 京"]]


def test_encoder_round_trips_through_its_state() -> None:
    sents = [["Ann", "visited", "Paris"], ["bob", "7"]]
    enc = SentenceEncoder(Vocabulary(["ann", "visited"]), lowercase=True,
                          chars=Vocabulary(list("Anvisted")), case=True,
                          bigrams=Vocabulary(["ann visited", "visited paris"]),
                          bigram_window="both")
    batch = enc.encode(sents)
    assert batch["x"].tolist() == [[2, 3, 1], [1, 1, 0]]  # <unk> = 1, <pad> = 0
    assert batch["case"].tolist() == [[5, 3, 5], [3, 1, 0]]  # casing of the raw tokens
    # next / previous bigram per token: unseen ones and the sentence ends are <unk> here
    assert batch["bigrams"].tolist() == [[[2, 1], [3, 2], [1, 3]], [[1, 1], [1, 1], [0, 0]]]
    assert batch["chars"].shape == (2, 3, 7)
    again = SentenceEncoder.from_state(enc.state()).encode(sents)
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    # a checkpoint from before the features were added still loads
    old = SentenceEncoder.from_state({"vocab": enc.vocab.to_dict(), "lowercase": True})
    assert set(old.encode(sents)) == {"x", "lengths"}


def test_datamodule_builds_bigram_vocab_on_train_only(tmp_path: Path) -> None:
    data = {"train": str(write_char_conll(tmp_path / "train.txt", 60, 0)),
            "val": str(write_char_conll(tmp_path / "val.txt", 10, 1)),
            "test": str(write_char_conll(tmp_path / "test.txt", 10, 2))}
    dm = NerDataModule(data=data, data_dir=str(tmp_path), char_level=True,
                       bigram_features=True, bigram_min_count=2, case_features=True)
    dm.setup()
    train = [g for s in dm.sentences["train"] for gs in token_bigrams(s.tokens) for g in gs]
    counts = {g: train.count(g) for g in set(train)}
    assert set(dm.bigrams.itos[2:]) == {g for g, c in counts.items() if c >= 2}
    assert dm.spec.bigram_vocab_size == len(dm.bigrams) and dm.spec.bigrams_per_token == 1
    assert dm.spec.case_classes == len(CASE_CLASSES)
    assert dm.describe()["bigram_vocab_size"] == len(dm.bigrams)
    batch = dm.collate(dm.datasets["val"].items[:4])
    assert batch["bigrams"].shape == (*batch["x"].shape, 1)
    assert (batch["bigrams"][batch["x"] == 0] == 0).all()  # padding stays padding
    state = dm.checkpoint_state()
    assert state["bigrams"] == dm.bigrams.to_dict() and state["case_features"] is True
    # word dropout's inputs, and the texts word vectors are matched against
    assert dm.spec.unk_id == 1 and len(dm.spec.token_counts) == len(dm.vocab)
    assert dm.training_texts()[0] == dm.sentences["train"][0].tokens
    # an unknown task.datamodule.bigram_window: test_schema.py


# ---- backbones -----------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_recurrent_encoder_reads_features_with_its_inputs(cell: str) -> None:
    torch.manual_seed(0)
    enc = RecurrentEncoder(cell, hidden_size=6, embedding_dim=5, vocab_size=9, bidirectional=True,
                           extra_input_size=3, input_dropout=0.0)
    assert enc.input.output_size == 8 and enc.extra_input_size == 3
    assert enc.embedding.embedding_dim == 5
    x, lengths = torch.tensor([[2, 3, 4], [5, 6, 0]]), torch.tensor([3, 2])
    f = torch.randn(2, 3, 3)
    a = enc(x, lengths, features=f).outputs
    b = enc(x, lengths, features=f + 1).outputs
    assert a.shape == (2, 3, 12) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="pass features="):
        enc(x, lengths)
    with pytest.raises(ValueError, match="extra_input_size=3"):
        enc(x, lengths, features=torch.randn(2, 3, 2))
    with pytest.raises(ValueError, match="built without extra_input_size"):
        RecurrentEncoder(cell, hidden_size=6, embedding_dim=5, vocab_size=9)(x, features=f)


def test_input_dropout_covers_the_features() -> None:
    enc = RecurrentEncoder("lstm", hidden_size=4, embedding_dim=5, vocab_size=9,
                           extra_input_size=3, input_dropout=0.5)
    seen: list[torch.Tensor] = []
    enc.input_dropout.register_forward_hook(lambda m, i, o: seen.append(o))
    torch.manual_seed(0)
    enc.train()
    enc(torch.tensor([[2, 3, 4, 5]] * 8), features=torch.ones(8, 4, 3))
    feats = seen[0][..., 5:]
    assert seen[0].shape[-1] == 8 and (feats == 0).any() and (feats == 2).any()  # 1/(1-0.5)


def test_widening_a_built_backbone_keeps_its_embedding() -> None:
    torch.manual_seed(0)
    enc = RecurrentEncoder("gru", hidden_size=4, embedding_dim=5, vocab_size=9, num_layers=2)
    table = enc.embedding.weight.detach().clone()
    enc.set_extra_input_size(7)
    assert enc.rnn.weight_ih_l0.shape == (12, 12) and enc.rnn.weight_ih_l1.shape == (12, 4)
    assert torch.equal(enc.embedding.weight, table)
    assert enc(torch.tensor([[1, 2]]), features=torch.zeros(1, 2, 7)).outputs.shape == (1, 2, 4)


def test_transformer_reads_features() -> None:
    torch.manual_seed(0)
    enc = TransformerEncoder(d_model=8, nhead=2, dim_feedforward=16, vocab_size=9,
                             extra_input_size=3).eval()
    x, f = torch.tensor([[2, 3, 4]]), torch.randn(1, 3, 3)
    assert enc.extra_input_size == 3
    assert not torch.allclose(enc(x, features=f).outputs, enc(x, features=-f).outputs)
    with pytest.raises(ValueError, match="pass features="):
        enc(x)
    enc.set_extra_input_size(0)
    assert enc.features_in is None and enc(x).outputs.shape == (1, 3, 8)


# ---- the tagger ----------------------------------------------------------------------------
def _spec(**extra) -> TagSpec:
    return TagSpec(tag_names=["O", "B-PER", "I-PER"], char_vocab_size=12, case_classes=8,
                   bigram_vocab_size=20, bigrams_per_token=2, unk_id=1,
                   token_counts=[0, 0, 1, 1, 2, 5, 9, 9, 9, 9], **extra)


def _batch() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randint(2, 10, (3, 5), generator=g), "lengths": torch.tensor([5, 4, 2]),
            "chars": torch.randint(1, 12, (3, 5, 4), generator=g),
            "case": torch.randint(1, 8, (3, 5), generator=g),
            "bigrams": torch.randint(1, 20, (3, 5, 2), generator=g),
            "y": torch.zeros(3, 5, dtype=torch.long)}


def _backbone() -> RecurrentEncoder:
    return RecurrentEncoder("lstm", hidden_size=6, embedding_dim=5, vocab_size=10,
                            bidirectional=True)


def test_tagger_feeds_every_feature_into_the_backbone() -> None:
    torch.manual_seed(0)
    task = TaggingTask(_backbone(), _spec(), _optimizer, char_features=True, char_filters=4,
                       case_features=True, case_dim=3, bigram_features=True, bigram_dim=2,
                       feature_position="input")
    assert task.feature_size == 4 + 3 + 2 * 2
    assert task.backbone.rnn.weight_ih_l0.shape[1] == 5 + 11  # the LSTM reads them
    assert task.emit.in_features == 12
    task.eval()
    batch = _batch()
    em = task.emissions(batch)
    for key in ("chars", "case", "bigrams"):  # each feature reaches the scores
        changed = {**batch, key: batch[key].flip(0)}
        assert not torch.allclose(task.emissions(changed), em), key
    with pytest.raises(ValueError, match="trained with case features"):
        task.emissions({k: v for k, v in batch.items() if k != "case"})


def test_tagger_can_keep_features_after_the_backbone() -> None:
    task = TaggingTask(_backbone(), _spec(), _optimizer, char_features=True, char_filters=4,
                       case_features=True, case_dim=3, feature_position="output")
    assert task.backbone.extra_input_size == 0 and task.emit.in_features == 12 + 7
    assert task.emissions(_batch()).shape == (3, 5, 3)
    # task.module.feature_position=middle: the config schema (tests/test_schema.py)


def test_tagger_refuses_features_the_data_lacks() -> None:
    with pytest.raises(ConfigError, match="set task.datamodule.bigram_features=true too"):
        TaggingTask(_backbone(), TagSpec(tag_names=["O"]), _optimizer, bigram_features=True)
    with pytest.raises(ConfigError, match="set task.datamodule.case_features=true too"):
        TaggingTask(_backbone(), TagSpec(tag_names=["O"]), _optimizer, case_features=True)


# ---- word dropout --------------------------------------------------------------------------
def test_word_dropout_replaces_only_rare_words_in_training() -> None:
    counts = [0, 0, 1, 1, 2, 5, 9]  # <pad>, <unk>, two singletons, a pair, frequent words
    drop = WordDropout(0.5, 2, DataSpec(unk_id=1, token_counts=counts))
    x = torch.arange(7).repeat(400, 1)
    torch.manual_seed(0)
    out = drop.train()(x)
    replaced = (out != x).float().mean(0)
    assert replaced[[0, 1, 5, 6]].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert all(0.4 < r < 0.6 for r in replaced[[2, 3, 4]].tolist())
    assert set(out[out != x].tolist()) == {1}
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ConfigError, match="needs word counts and an <unk> token"):
        WordDropout(0.5, 1, DataSpec())
    # task.module.word_dropout_max_count=0: the config schema (tests/test_schema.py)


def _backbone_inputs(task: nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    task.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    return seen


def _training_drops_only_singletons(plain: nn.Module, noisy: nn.Module, batch: dict) -> None:
    """Give ``noisy`` the weights of ``plain``, take one training step with it and check
    that some word ids reached the backbone as <unk> (1), and only singletons (2, 3)."""
    noisy.load_state_dict(plain.state_dict())
    noisy.log = plain.log = lambda *a, **k: None
    seen = _backbone_inputs(noisy)
    noisy.train()
    torch.manual_seed(1)
    noisy.training_step(batch, 0)
    changed = seen[0] != batch["x"]
    assert changed.any() and (seen[0][changed] == 1).all()
    assert set(batch["x"][changed].tolist()) <= {2, 3}


def test_tagger_word_dropout_in_training_never_at_eval() -> None:
    spec = _spec()
    torch.manual_seed(0)
    plain = TaggingTask(_backbone(), spec, _optimizer, char_features=True, char_filters=4,
                        feature_position="input")
    noisy = TaggingTask(_backbone(), spec, _optimizer, char_features=True, char_filters=4,
                        feature_position="input", word_dropout=0.9)
    batch = _batch()
    _training_drops_only_singletons(plain, noisy, batch)
    for mode in ("train", "eval"):  # validation never drops words, whatever the mode
        for task in (plain, noisy):
            getattr(task, mode)()
            task.means["val"]["loss"].reset()
            task.scorers["val"].reset()
            torch.manual_seed(2)  # the same dropout masks for both in train mode
            task.validation_step(batch, 0)
        assert plain.mean("val", "loss") == noisy.mean("val", "loss")
    plain.eval(), noisy.eval()
    assert plain.predict_tags(batch) == noisy.predict_tags(batch)


def test_classifier_word_dropout_in_training_never_at_eval() -> None:
    spec = ClassifySpec(num_classes=2, unk_id=1, token_counts=[0, 0, 1, 1, 2, 5, 9, 9, 9, 9])
    torch.manual_seed(0)
    plain = ClassificationTask(_backbone(), spec, _optimizer)
    noisy = ClassificationTask(_backbone(), spec, _optimizer, word_dropout=0.9)
    batch = {**_batch(), "y": torch.tensor([0, 1, 0])}
    _training_drops_only_singletons(plain, noisy, batch)
    for task in (plain, noisy):
        task.eval()
        task.validation_step(batch, 0)
    assert plain.mean("val", "loss") == noisy.mean("val", "loss")
    assert torch.equal(plain(batch["x"], batch["lengths"]), noisy(batch["x"], batch["lengths"]))


# ---- end to end: the checkpoint tags as its module did --------------------------------------
TAGGER = [*FAST["ner"], "model=bilstm", "model.hidden_size=16", "model.embedding_dim=16",
          "task.crf=true", "trainer.max_epochs=4", "task.optimizer.lr=0.01", "logger=none",
          "++task.module.feature_position=input"]


def _tags_from_cli(ckpt: str, texts: list[str], tmp_path: Path, capsys) -> list[list[str]]:
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert tag_main([ckpt, "--file", str(src)]) == 0
    blocks = capsys.readouterr().out.strip().split("\n\n")
    return [[line.split("\t")[1] for line in b.splitlines() if not line.startswith("entities:")]
            for b in blocks]


def _check_checkpoint_tags_like_module(metrics: dict, tmp_path: Path, capsys, joiner: str,
                                       feature: str) -> None:
    loaded = load_checkpoint(metrics["ckpt_path"])
    assert loaded.module.backbone.extra_input_size == loaded.module.feature_size > 0
    cfg = loaded.config
    dm = NerDataModule(**{k: v for k, v in cfg.task.datamodule.items() if k != "_target_"})
    dm.setup()
    items = dm.datasets["test"].items
    batch = dm.collate(items)
    tokens = batch["tokens"]
    encoded = SentenceEncoder.from_state(loaded.data_state).encode(tokens)
    assert feature in encoded and all(torch.equal(encoded[k], batch[k]) for k in encoded)
    expected = loaded.module.predict_tags(batch)
    assert any(t != "O" for row in expected for t in row)  # the model found entities
    texts = [joiner.join(t) for t in tokens]
    assert _tags_from_cli(metrics["ckpt_path"], texts, tmp_path, capsys) == expected
    served = Tagger(loaded)(pd.DataFrame({"text": texts}))
    assert [list(t) for t in served["tags"]] == expected


# per feature: (fixture writer, file suffix, overrides, token joiner, batch key)
TAGGED_FEATURES = {
    "bigrams": (write_char_conll, "txt", (
        "task.datamodule.char_level=true", "++task.datamodule.bigram_features=true",
        "++task.datamodule.bigram_window=both", "++task.module.bigram_features=true",
        "++task.module.bigram_dim=8", "++task.module.word_dropout=0.3"), ""),
    "case": (write_conll, "conll", (
        "task.datamodule.lowercase=true", "task.char_features=true",
        "++task.datamodule.case_features=true", "++task.module.case_features=true",
        "++task.module.case_dim=4"), " "),
}


@pytest.mark.parametrize("feature", sorted(TAGGED_FEATURES))
def test_rnnlab_tag_with_token_features(make_config, tmp_path: Path, capsys,
                                        feature: str) -> None:
    writer, suffix, overrides, joiner = TAGGED_FEATURES[feature]
    data = {split: writer(tmp_path / f"{split}.{suffix}", n, seed)
            for split, n, seed in (("train", 120, 0), ("val", 16, 1), ("test", 16, 2))}
    cfg = make_config(*TAGGER, *[f"task.data.{k}={v}" for k, v in data.items()], *overrides)
    metrics = run(cfg)
    assert metrics["test/f1"] > 0.5
    _check_checkpoint_tags_like_module(metrics, tmp_path, capsys, joiner, feature)
