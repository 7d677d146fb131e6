"""What many test modules share, in one place: configs composed as ``train.py`` composes them,
tiny corpora written in each task's real file format, the small settings each task trains
at in tests, and metric histories read back from the MLflow store.

Plain functions and constants (the fixtures that wrap them are in conftest.py), so that no
test module imports another one.
"""

from __future__ import annotations

import math
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from rnnlab.build import build_datamodule
from rnnlab.build.schema import register_configs
from rnnlab.core.paths import config_dir, register_resolvers

REPO = Path(__file__).resolve().parents[1]
register_resolvers()
register_configs()  # the schemas conf/model, conf/task and conf/trainer start from

# ---- composing configs ---------------------------------------------------------------------
# Every finished run logs a servable MLflow model (logger.mlflow.log_model, default on);
# writing and re-loading it costs more than a tiny run's training, so tests switch it off
# unless they test serving or the registry.
NO_SERVABLE_MODEL = "logger.mlflow.log_model=false"


def _uses_mlflow(overrides: list[str]) -> bool:
    return all(not o.startswith("logger=") or o == "logger=mlflow" for o in overrides)


def compose_config(overrides: list[str], root: Path | None = None, *,
                   log_model: bool = False) -> DictConfig:
    """The config ``python train.py <overrides>`` would get, rooted at ``root`` if given;
    without the servable model unless ``log_model`` (or the overrides) ask for it."""
    extra = []
    if root is not None:
        extra = [f"paths.root_dir={root}", f"paths.output_dir={root}/outputs/run"]
        if _uses_mlflow(overrides):  # logger=csv/none: no mlflow tracking_uri key to set
            extra.append(f"logger.mlflow.tracking_uri=sqlite:///{root}/mlflow.db")
    if not log_model and _uses_mlflow(overrides):
        extra.append(NO_SERVABLE_MODEL)  # a later logger.mlflow.log_model=true still wins
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("config", overrides=[*extra, *overrides])


# ---- the small settings each task trains at in tests ---------------------------------------
# One entry per task; a test appends what it needs on top (a later override wins).
_SEQ2SEQ = ["trainer.max_epochs=3", "task.datamodule.batch_size=16", "model.hidden_size=32",
            "model.embedding_dim=16", "task.module.embedding_dim=16",
            "task.module.attention_size=16", "task.module.dropout=0.0", "task.beam_size=2",
            "task.module.max_decode_len=12", "task.optimizer.lr=0.01",
            "callbacks.early_stopping=null"]
FAST: dict[str, list[str]] = {
    "sentiment": ["trainer.max_epochs=1", "task.datamodule.batch_size=16", "model.hidden_size=16",
                  "model.embedding_dim=16", "task.datamodule.min_freq=1"],
    "charlm": ["task.datamodule.seq_len=32", "task.datamodule.batch_size=16",
               "task.datamodule.batches_per_epoch=12", "trainer.max_epochs=2",
               "task.module.sample_length=20", "model.hidden_size=32", "model.embedding_dim=16"],
    "g2p": _SEQ2SEQ,
    "translate": [*_SEQ2SEQ, "task.module.label_smoothing=0.0", "task.datamodule.min_freq=1"],
    "ner": ["task=ner", "task.datamodule.batch_size=16", "task.module.dropout=0.0"],
    # adding and copy
    "synthetic": ["model=gru", "model.hidden_size=16", "model.embedding_dim=8",
                  "trainer.max_epochs=3", "task.datamodule.n_train=384",
                  "task.datamodule.n_val=64", "task.datamodule.n_test=64",
                  "task.datamodule.batch_size=32", "trainer.log_every_n_steps=4"],
    "forecast": ["task.window=12", "task.horizon=6", "task.test_size=12", "task.val_size=12",
                 "trainer.max_epochs=4", "task.datamodule.batch_size=8", "callbacks=none",
                 "task.optimizer.lr=0.01"],
    "speech": ["model.hidden_size=16", "trainer.max_epochs=3", "task.datamodule.batch_size=16"],
    "names": ["task.data.locales=[fr_FR,de_DE,it_IT]", "model.hidden_size=32",
              "model.embedding_dim=16", "task.category_dim=8", "task.datamodule.batch_size=16",
              "trainer.max_epochs=2", "trainer.limit_train_batches=12",
              "trainer.limit_val_batches=4", "trainer.limit_test_batches=4"],
}
# a Transformer takes these instead of model.hidden_size / model.embedding_dim
TRANSFORMER = ["model.d_model=32", "model.nhead=2", "model.num_layers=1",
               "model.dim_feedforward=64"]


def sized_for(model: str, overrides: list[str]) -> list[str]:
    """``overrides`` with the recurrent sizes swapped for TRANSFORMER's when ``model`` is one."""
    if model != "transformer":
        return list(overrides)
    return [*(o for o in overrides if not o.startswith("model.")), *TRANSFORMER]


# ---- reading runs back ---------------------------------------------------------------------
def latest_run(root: Path, experiment: str) -> tuple[MlflowClient, Run]:
    """The client of ``root``'s store and the newest run of ``experiment``."""
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    (latest,) = client.search_runs([exp.experiment_id], max_results=1,
                                   order_by=["attributes.start_time DESC"])
    return client, latest


def metric_history(root: Path, experiment: str, metric: str) -> list[float]:
    """Every value of ``metric`` in the newest run of ``experiment``, in step order."""
    client, latest = latest_run(root, experiment)
    return [m.value for m in sorted(client.get_metric_history(latest.info.run_id, metric),
                                    key=lambda m: m.step)]


# ---- tiny corpora in the real formats ------------------------------------------------------
def write_sentiment_csv(path: Path, n: int = 160, seed: int = 0, sep: str = ",") -> Path:
    """A learnable two-class corpus in the user-file format (text,label)."""
    rng = random.Random(seed)
    pos = ["good", "great", "fine", "superb", "moving", "funny"]
    neg = ["bad", "awful", "dull", "boring", "weak", "messy"]
    filler = ["the", "movie", "film", "was", "a", "plot", "and", "actors", "story", "it"]
    lines = [f"text{sep}label"]
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.sample(filler, rng.randint(3, 8)) + rng.sample(pos if i % 2 == 0 else neg, 2)
        rng.shuffle(words)
        text = " ".join(words)
        lines.append(f'"{text}"{sep}{label}' if sep == "," else f"{text}{sep}{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def token_batch(lengths: list[int], vocab: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """A right-padded batch of random token ids (never 0 or 1) and its lengths."""
    torch.manual_seed(0)
    x = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randint(2, vocab, (n,))
    return x, torch.tensor(lengths)


PLAY_LINES = ["ROMEO: But soft, what light through yonder window breaks?",
              "JULIET: O Romeo, Romeo, wherefore art thou Romeo?",
              "HAMLET: To be, or not to be, that is the question.",
              "MACBETH: Is this a dagger which I see before me?"]


def write_text(path: Path, n_lines: int = 600, seed: int = 0) -> Path:
    """A plain-text corpus for charlm: lines of four plays in random order."""
    rng = random.Random(seed)
    path.write_text("\n".join(rng.choice(PLAY_LINES) for _ in range(n_lines)) + "\n",
                    encoding="utf-8")
    return path


PHONES = {"a": "AE1", "b": "B", "d": "D", "e": "EH0", "k": "K", "m": "M", "o": "OW1",
          "s": "S", "t": "T"}


def write_cmudict(path: Path, n: int = 240, seed: int = 0) -> Path:
    """Words over a few letters, one phoneme per letter; every 10th word has a variant."""
    rng = random.Random(seed)
    letters = sorted(PHONES)
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(2, 6))))
    lines = ["# a tiny dictionary in the cmudict format"]
    for i, word in enumerate(sorted(words)):
        phones = " ".join(PHONES[c] for c in word)
        lines.append(f"{word} {phones}" + (" # a comment" if i == 3 else ""))
        if i % 10 == 0:
            lines.append(f"{word}(2) {phones.replace('AE1', 'AH0')}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


LEXICON = {"the": "le", "cat": "chat", "dog": "chien", "sees": "voit", "eats": "mange",
           "bird": "oiseau", "fish": "poisson", "big": "gros", "small": "petit", "red": "rouge"}


def toy_sentence(rng: random.Random) -> list[str]:
    """3 to 7 words of LEXICON's source side."""
    words = list(LEXICON)
    return [rng.choice(words) for _ in range(rng.randint(3, 7))]


def write_pairs(path: Path, n: int = 200, seed: int = 0) -> Path:
    """source<TAB>target lines: a word-for-word toy translation."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        src = toy_sentence(rng)
        lines.append(" ".join(src).capitalize() + ".\t" +
                     " ".join(LEXICON[w] for w in src).capitalize() + ".")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


PEOPLE = [["Ann"], ["Bob", "Smith"], ["Carla"], ["Dan", "Lee"], ["Eve"]]
PLACES = [["Paris"], ["New", "York"], ["Oslo"], ["Rio"], ["Le", "Mans"]]
FILLER = ["today", "said", "that", "went", "to", "from", "the", "a", "and", "visited"]


def write_conll(path: Path, n: int = 120, seed: int = 0, bioes: bool = False) -> Path:
    """A learnable corpus in CoNLL layout: token POS tag, -DOCSTART-, blank lines."""
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- O", ""]
    for _ in range(n):
        segments = [[(w, "O")] for w in rng.sample(FILLER, rng.randint(1, 3))]
        for ents, typ in ((PEOPLE, "PER"), (PLACES, "LOC")):
            ent = rng.choice(ents)
            if bioes and len(ent) == 1:
                tags = [f"S-{typ}"]
            elif bioes:
                tags = [f"B-{typ}"] + [f"I-{typ}"] * (len(ent) - 2) + [f"E-{typ}"]
            else:
                tags = [f"B-{typ}"] + [f"I-{typ}"] * (len(ent) - 1)
            segments.append(list(zip(ent, tags, strict=True)))
        rng.shuffle(segments)
        words = [pair for seg in segments for pair in seg]
        lines += [f"{w} NN {t}" for w, t in words] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def seasonal_values(n: int, seed: int = 0, noise: float = 1.0) -> np.ndarray:
    """Trend + yearly season + noise, positive: a small airline look-alike."""
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return 100 + 1.5 * t + 15 * np.sin(2 * math.pi * t / 12) + noise * rng.normal(size=n)


def write_series_csv(path: Path, columns: dict[str, list], n: int | None = None,
                     start: str = "2000-01-01", freq: str = "MS") -> Path:
    """A CSV with a ``month`` date column and the given value columns (None: empty cell)."""
    import pandas as pd  # pandas is slow to import and only the forecast tests need it

    n = n or len(next(iter(columns.values())))
    dates = pd.date_range(start, periods=n, freq=freq).strftime("%Y-%m-%d")
    lines = [",".join(["month", *columns])]
    for i in range(n):
        cells = ["" if columns[c][i] is None else str(columns[c][i]) for c in columns]
        lines.append(",".join([dates[i], *cells]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_frames_npz(path: Path, n: int = 60, dim: int = 13, n_classes: int = 3,
                     seed: int = 0) -> Path:
    """Utterances in the FSDD digits layout: X all frames stacked, y labels, lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 12, size=n)
    y = np.arange(n) % n_classes
    centres = rng.normal(0, 3, size=(n_classes, dim))
    x = np.concatenate([centres[c] + rng.normal(0, 1, size=(k, dim)) + 5.0
                        for c, k in zip(y, lengths, strict=True)]).astype(np.float32)
    np.savez(path, X=x, y=y, lengths=lengths)
    return path


# three made-up "languages", each with its own sounds, so a tiny model can tell them apart
SOUNDS = {"fr_FR": (["Ma", "Lu", "Jo", "Ré", "Cé"], ["ette", "ier", "eau", "ine"]),
          "de_DE": (["Wolf", "Kurt", "Gün", "Hel", "Sieg"], ["mann", "berg", "hardt", "rich"]),
          "it_IT": (["Gio", "Mar", "Fran", "Lu", "Pao"], ["cco", "zzi", "lino", "etta"])}
SHARED_NAME = "Anna"  # listed by every locale: it must land in one split everywhere


def made_up_names(locale: str, n: int, seed: int) -> list[str]:
    """About ``n`` names built from ``locale``'s sounds, the same for the same seed."""
    rng = random.Random(f"{locale}{seed}")
    starts, ends = SOUNDS[locale]
    return sorted({rng.choice(starts) + rng.choice(["", "r", "l", "n"]) + rng.choice(ends)
                   for _ in range(n)})


def provider_source(locale: str) -> str:
    """A provider file in faker's own styles: tuples, annotated tuples, weighted
    OrderedDicts, derived attributes and non-name attributes."""
    first = made_up_names(locale, 60, 1)
    last = made_up_names(locale, 60, 2)
    half = len(first) // 2
    weighted = ", ".join(f"({n!r}, 0.01)" for n in last)
    return (
        "from collections import OrderedDict\nfrom typing import Tuple\n\n"
        "from .. import Provider as PersonProvider\n\n\n"
        "class Provider(PersonProvider):\n"
        "    formats = ('{{first_name}} {{last_name}}',)\n"
        f"    first_names_male = {tuple(first[:half] + [SHARED_NAME])!r}\n"
        f"    first_names_female: Tuple[str, ...] = {tuple(first[half:])!r}\n"
        "    first_names = first_names_male + first_names_female\n"
        f"    last_names = OrderedDict(({weighted},))\n"
        "    prefixes = ('Dr.', 'Mr.')\n")


def fake_faker_wheel(cache: Path) -> Path:
    """A wheel in faker's layout, with a decoy locale the tests never ask for."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "faker-40.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("faker/providers/person/__init__.py", "class Provider: pass\n")
        for locale in SOUNDS:
            zf.writestr(f"faker/providers/person/{locale}/__init__.py", provider_source(locale))
        zf.writestr("faker/providers/person/ja_JP/__init__.py",
                    "class Provider:\n    last_names = ('佐藤', '鈴木')\n")
    return path


# ---- the training grid ---------------------------------------------------------------------
def slow_except(values: list, *fast: object) -> list:
    """``values`` as pytest parameters, all but ``fast`` marked slow. The default suite trains
    every cell once (on sentiment) and every task once (with one cell); the rest of the
    cell x task grid runs in the slow suite (CI's ``make test-slow``)."""
    slow = pytest.mark.slow
    return [v if v in fast else pytest.param(*(v if isinstance(v, tuple) else (v,)), marks=slow)
            for v in values]


# ---- the tiny runs of the distributed tests -----------------------------------------------
def tiny_run_parts(task: str, tmp_path: Path) -> tuple[DictConfig, Any]:
    """The composed config (hidden 16, batches of 7) and its set-up datamodule, seeded."""
    cfg = compose_config([*tiny_task_overrides(task, tmp_path), "model.hidden_size=16",
                          "task.datamodule.batch_size=7"], tmp_path)
    pl.seed_everything(0)
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup()
    return cfg, dm


def tiny_task_overrides(task: str, root: Path) -> list[str]:
    """Tiny user data for ``task``; 30 test examples in batches of 7 where batches are
    bucketed (five batches: one rank gets a filler batch, and the last batch is short)."""
    if task == "ner":
        data = write_conll(root / "train.conll", n=300)
        return ["task=ner", "model=bilstm", "task.crf=true", f"task.data.train={data}"]
    if task == "g2p":
        data = write_cmudict(root / "tiny.dict", n=600)  # 5% test words
        return ["task=g2p", "model=gru", f"task.data.path={data}", "task.beam_size=2",
                "task.optimizer.lr=0.01"]
    if task == "translate":  # corpus BLEU/chrF from the gathered hypotheses
        data = write_pairs(root / "pairs.tsv", n=300)
        return ["task=translate", "model=gru", f"task.data.path={data}", "task.beam_size=2",
                "task.datamodule.min_freq=1", "task.optimizer.lr=0.01",
                "task.module.max_decode_len=12"]
    if task == "charlm":  # 3 stateful test streams: one rank carries two, the other one
        data = write_text(root / "plays.txt", n_lines=400)
        return ["task=charlm", "model=gru", f"task.data.path={data}", "task.stateful=true",
                "task.datamodule.seq_len=16", "task.datamodule.eval_streams=3",
                "task.module.sample_length=0"]
    if task == "copy":  # whole generated batches: each rank keeps alternate rows
        return ["task=copy", "model=gru", "task.delay=5", "task.datamodule.n_train=140",
                "task.datamodule.n_val=30", "task.datamodule.n_test=30"]
    if task == "forecast":  # window loss and the period forecast, which every rank repeats
        data = write_series_csv(root / "sales.csv", {"sales": list(seasonal_values(96))})
        return ["task=forecast", "model=gru", f"task.data.path={data}", "task.data.target=sales",
                "task.data.date_column=month", "task.window=12", "task.horizon=6",
                "task.test_size=12", "task.val_size=12"]
    data = write_sentiment_csv(root / "reviews.csv", n=300)
    return ["task=sentiment", "model=gru", f"task.data.train={data}",
            "task.datamodule.min_freq=1"]
