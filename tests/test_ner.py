"""task=ner end to end on user CoNLL files: both heads learn, every model runs, the baseline
and rnnlab-tag work, and bad files stop the run before anything reaches MLflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAST, slow_except, write_conll
from mlflow.tracking import MlflowClient

from rnnlab.cli.tag import main as tag_main
from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data.ner import NerDataModule
from rnnlab.models import CELLS
from rnnlab.models.presets import recurrent_presets
from rnnlab.run.train import run

REPO = Path(__file__).resolve().parents[1]
@pytest.fixture
def conll_file(tmp_path: Path) -> Path:
    return write_conll(tmp_path / "train.conll")


NER = FAST["ner"]
SMALL = ["model.hidden_size=16", "model.embedding_dim=16"]


def _runs(root: Path):
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("ner")
    if exp is None:
        return client, []
    return client, client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])


@pytest.mark.parametrize("crf", [False, True])
def test_both_heads_learn(make_config, lab_root: Path, conll_file: Path, crf: bool) -> None:
    cfg = make_config(*NER, *SMALL, "model=bilstm", f"task.crf={crf}", "trainer.max_epochs=4",
                      "task.optimizer.lr=0.01", f"task.data.train={conll_file}")
    metrics = run(cfg)
    client, runs = _runs(lab_root)
    history = [m.value for m in client.get_metric_history(runs[0].info.run_id, "train/loss_epoch")]
    assert len(history) == 4 and history[-1] < history[0] * 0.7
    assert metrics["test/f1"] > 0.5
    for key in ("val/f1", "test/precision", "test/recall", "test/acc", "test/f1_PER"):
        assert key in runs[0].data.metrics
    arts = [a.path for a in client.list_artifacts(runs[0].info.run_id, "ner")]
    assert {"ner/test_per_type.txt", "ner/test_examples.txt"} <= set(arts)


# every cell trains sentiment in the default suite, and the tests around this one tag with
# bilstm, bigru and lstm; here the Transformer
@pytest.mark.parametrize("model", slow_except([*CELLS, *recurrent_presets(bidirectional=True),
                                               "transformer"], "transformer"))
def test_every_model_trains(make_config, conll_file: Path, model: str) -> None:
    sizes = ["model.d_model=16", "model.dim_feedforward=32"] if model == "transformer" else SMALL
    cfg = make_config(*NER, *sizes, f"model={model}", "trainer.max_epochs=4", "task.crf=true",
                      "task.optimizer.lr=0.01", f"task.data.train={conll_file}", "logger=none")
    # tagging every token O scores an entity F1 of 0: the model must have found entities
    assert run(cfg)["test/f1"] > 0.3


def test_majority_tag_baseline(make_config, lab_root: Path, conll_file: Path) -> None:
    metrics = run(make_config(*NER, "model=majority_tag", f"task.data.train={conll_file}"))
    # every entity token here is unambiguous, so the lookup is nearly perfect
    assert metrics["test/f1"] > 0.9 and "val/f1" in metrics
    _, runs = _runs(lab_root)
    assert runs[0].data.tags["model"] == "majority_tag"


def test_given_splits_bioes_and_tag_cli(make_config, tmp_path: Path, capsys) -> None:
    files = {s: write_conll(tmp_path / f"{s}.bioes", n, i, bioes=True)
             for i, (s, n) in enumerate([("train", 120), ("val", 20), ("test", 20)])}
    cfg = make_config(*NER, *SMALL, "model=bigru", "task.crf=true", "trainer.max_epochs=4",
                      "task.optimizer.lr=0.01", *[f"task.data.{s}={p}" for s, p in files.items()])
    metrics = run(cfg)
    assert metrics["test/f1"] > 0.5
    assert tag_main([metrics["ckpt_path"], "--text", "Ann visited New York today"]) == 0
    out = capsys.readouterr().out
    assert "Ann\tB-PER" in out and "entities:" in out
    lines = tmp_path / "in.txt"
    lines.write_text("Bob Smith went to Oslo\n\nEve said\n")
    assert tag_main([metrics["ckpt_path"], "--file", str(lines)]) == 0
    assert capsys.readouterr().out.count("entities:") == 2
    assert tag_main([str(tmp_path / "missing.ckpt"), "--text", "x"]) == 2


def test_char_cnn_features_learn_and_tag(make_config, conll_file: Path, capsys) -> None:
    cfg = make_config(*NER, *SMALL, "model=lstm", "task.char_features=true", "task.crf=true",
                      "trainer.max_epochs=4", "task.optimizer.lr=0.01",
                      f"task.data.train={conll_file}", "logger=none")
    metrics = run(cfg)
    assert metrics["test/f1"] > 0.5
    assert tag_main([metrics["ckpt_path"], "--text", "Ann visited Oslo"]) == 0
    assert "Oslo\tB-LOC" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="already one character per token"):
        NerDataModule(dataset="msra", char_features=True)


def test_bad_file_fails_before_mlflow(make_config, lab_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.conll"
    bad.write_text("Ann NN B-PER\nsaid NN\n")
    with pytest.raises(DataError, match=r"bad\.conll, line 2: 2 columns where line 1 has 3"):
        run(make_config(*NER, *SMALL, f"task.data.train={bad}"))
    assert _runs(lab_root)[1] == []


def test_train_py_exits_nonzero_with_one_sentence(lab_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.conll"
    bad.write_bytes(b"Ann B-PER\n\nsa\xffid O\n")
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "task=ner", f"task.data.train={bad}",
         f"paths.root_dir={lab_root}", f"logger.mlflow.tracking_uri=sqlite:///{lab_root}/m.db"],
        capture_output=True, text=True, cwd=lab_root, timeout=300)
    assert proc.returncode == 2
    assert "bad.conll, line 3: the file is not valid UTF-8" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_datamodule_split_and_errors(conll_file: Path, tmp_path: Path) -> None:
    dm = NerDataModule(data={"train": str(conll_file)}, data_dir=str(tmp_path))
    dm.setup()
    assert {s: len(dm.datasets[s]) for s in ("train", "val", "test")} == \
        {"train": 96, "val": 12, "test": 12}
    assert dm.tag_names[0] == "O" and len(dm.spec.tag_names) == 5 and not dm.char_level
    batch = dm.collate([dm.datasets["train"][i] for i in range(3)])
    assert (batch["y"][batch["x"] == 0] == -100).all() and len(batch["tokens"]) == 3
    with pytest.raises(ConfigError, match="task.datamodule.dataset='conll' is unknown"):
        NerDataModule(dataset="conll")
    test = tmp_path / "test.conll"
    test.write_text("Ann B-PER\nsaid O\n\nIBM B-ORG\n")
    with pytest.raises(DataError, match=r"test\.conll, line 4: tag 'B-ORG' never occurs in"):
        NerDataModule(data={"train": str(conll_file), "test": str(test)},
                      data_dir=str(tmp_path)).setup()
