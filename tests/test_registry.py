"""``compare.py --register`` names each task's best model ``rnnlab-<task>@champion`` (by the
task's own metric and direction), and the CLIs take such a URI wherever a checkpoint goes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from test_charlm import write_text
from test_g2p import write_cmudict
from test_ner import write_conll

from conftest import compose_config, write_sentiment_csv
from rnnlab.report.compare import main as compare_main
from rnnlab.report.registry import ALIAS, MODEL_URI_TAG, best_runs
from rnnlab.run.train import run

SMALL = ["model.hidden_size=16", "model.embedding_dim=16"]


# ---- choosing the champion: planted runs ----------------------------------------------------
def _run(run_id: str, value: float | None, monitor: str = "val/f1", mode: str = "max",
         model: str = "lstm", start: int = 0, **tags: str) -> SimpleNamespace:
    metrics = {} if value is None else {f"best/{monitor}": value}
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, start_time=start, run_name=run_id),
        data=SimpleNamespace(metrics=metrics,
                             params={"task.monitor": monitor, "task.mode": mode},
                             tags={"model": model, MODEL_URI_TAG: f"models:/m-{run_id}",
                                   **tags}))


class FakeStore:
    """search_experiments / search_runs over planted runs (FINISHED ones only, as asked)."""

    def __init__(self, runs: dict[str, list[SimpleNamespace]]) -> None:
        self.runs = runs

    def search_experiments(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name=n, experiment_id=n) for n in [*self.runs, "reports"]]

    def search_runs(self, ids: list[str], filter_string: str = "", max_results: int = 0
                    ) -> list[SimpleNamespace]:
        assert filter_string == "attributes.status = 'FINISHED'"
        return list(self.runs.get(ids[0], []))


def test_the_champion_follows_each_tasks_metric_and_direction() -> None:
    store = FakeStore({
        "ner": [_run("a", 0.71), _run("b", 0.79, model="bigru"), _run("c", 0.75)],
        "charlm": [_run("d", 1.62, "val/loss", "min"), _run("e", 1.55, "val/loss", "min"),
                   _run("f", 1.90, "val/loss", "min")],
    })
    chosen, notes = best_runs(store)
    assert chosen["ner"][0].info.run_id == "b" and chosen["ner"][1:] == ("val/f1", True, 0.79)
    assert chosen["charlm"][0].info.run_id == "e" and chosen["charlm"][2] is False
    assert notes == []


def test_runs_without_a_model_other_metrics_parents_and_filters_are_left_out() -> None:
    no_model = _run("x", 0.99)
    del no_model.data.tags[MODEL_URI_TAG]
    store = FakeStore({"ner": [
        _run("a", 0.70, start=1), _run("tie", 0.70, start=2),  # a tie goes to the earlier run
        no_model, _run("parent", 0.98, rnnlab_role="sweep_parent"),
        _run("acc", 0.97, monitor="val/acc"),  # an override of task.monitor: not comparable
        _run("nan", float("nan")), _run("none", None)],
        "sentiment": [no_model]})
    chosen, notes = best_runs(store)
    assert chosen["ner"][0].info.run_id == "a"
    assert "sentiment" not in chosen
    assert any("1 run(s) monitor another metric than val/f1" in n for n in notes)
    assert any(n.startswith("task sentiment: no finished run with a logged model") for n in notes)
    swept = FakeStore({"ner": [_run("a", 0.7, sweep_id="s1"), _run("b", 0.9, sweep_id="s2"),
                               _run("c", 0.95, model="gru", sweep_id="s1")]})
    assert best_runs(swept, sweep_id="s1")[0]["ner"][0].info.run_id == "c"
    assert best_runs(swept, models=["lstm"])[0]["ner"][0].info.run_id == "b"
    assert best_runs(swept, tasks=["charlm"])[0] == {}
    late = FakeStore({"ner": [_run("old", 0.9, start=0),
                              _run("new", 0.5, start=int(2e12))]})  # 2033
    assert best_runs(late, since=dt.date(2030, 1, 1))[0]["ner"][0].info.run_id == "new"


# ---- a real store: register, move the alias, use it from the CLIs ---------------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry_lab")
    yield root
    mlflow.set_tracking_uri(None)


def _train(root: Path, name: str, *overrides: str) -> tuple[dict[str, Any], Any]:
    cfg = compose_config([f"paths.root_dir={root}", f"paths.output_dir={root}/outputs/{name}",
                          f"logger.mlflow.tracking_uri=sqlite:///{root}/mlflow.db", *overrides])
    metrics = run(cfg)
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    (r,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`rnnlab.output_dir` = '{root}/outputs/{name}'")
    return metrics, r


@pytest.fixture(scope="module")
def store(lab: Path) -> dict[str, Any]:
    """A store with two NER runs, a tf-idf sentiment run, a charlm and a g2p run."""
    conll = write_conll(lab / "train.conll")
    ner = [_train(lab, f"ner{seed}", "task=ner", "model=gru", f"task.data.train={conll}",
                  "task.datamodule.batch_size=16", "trainer.max_epochs=2", f"seed={seed}",
                  *SMALL) for seed in (1, 2)]
    csv = write_sentiment_csv(lab / "reviews.csv")
    sentiment = _train(lab, "tfidf", "model=tfidf_logreg", f"task.data.train={csv}")
    charlm = _train(lab, "charlm", "task=charlm", "model=gru",
                    f"task.data.path={write_text(lab / 'plays.txt')}",
                    "task.datamodule.seq_len=32", "task.datamodule.batch_size=16",
                    "task.datamodule.batches_per_epoch=6", "trainer.max_epochs=1",
                    "task.module.sample_length=0", *SMALL)
    g2p = _train(lab, "g2p", "task=g2p", "model=gru",
                 f"task.data.path={write_cmudict(lab / 'tiny.dict')}", "trainer.max_epochs=1",
                 "task.datamodule.batch_size=16", "model.hidden_size=16",
                 "model.embedding_dim=16", "task.module.embedding_dim=16",
                 "task.module.attention_size=16", "task.beam_size=2",
                 "task.module.max_decode_len=8")
    return {"ner": ner, "sentiment": sentiment, "charlm": charlm, "g2p": g2p,
            "uri": f"sqlite:///{lab}/mlflow.db"}


def _register(store: dict[str, Any], lab: Path, capsys: pytest.CaptureFixture, *extra: str
              ) -> tuple[int, str]:
    rc = compare_main(["--tracking-uri", store["uri"], "--no-log", "--out",
                       str(lab / "report"), "--register", *extra])
    return rc, capsys.readouterr().out


def test_register_names_each_tasks_best_run_and_moves_the_alias(
        store: dict[str, Any], lab: Path, capsys: pytest.CaptureFixture) -> None:
    rc, out = _register(store, lab, capsys)
    assert rc == 0
    client = MlflowClient(store["uri"])
    first, second = (r for _, r in store["ner"])
    best = max((first, second), key=lambda r: (r.data.metrics["best/val/f1"],
                                               -r.info.start_time))
    champion = client.get_model_version_by_alias("rnnlab-ner", ALIAS)
    assert champion.run_id == best.info.run_id
    assert champion.source == best.data.tags[MODEL_URI_TAG]
    assert f"rnnlab-ner@champion -> version {champion.version}" in out
    assert {m.name for m in client.search_registered_models()} == {
        "rnnlab-ner", "rnnlab-sentiment", "rnnlab-charlm", "rnnlab-g2p"}
    # the registered sentiment champion predicts raw text through pyfunc
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model("models:/rnnlab-sentiment@champion")
    assert set(model.predict(__import__("pandas").DataFrame(
        {"text": ["a great movie", "an awful film"]}))) <= {"positive", "negative"}

    # registering again changes nothing
    rc, out = _register(store, lab, capsys)
    assert rc == 0 and "(unchanged)" in out
    assert len(client.search_model_versions("name = 'rnnlab-ner'")) == 1

    # the other run becomes the best: a new version carries the alias, the old one stays
    other = second if best is first else first
    client.log_metric(other.info.run_id, "best/val/f1", 1.0)
    rc, out = _register(store, lab, capsys, "--tasks", "ner")
    moved = client.get_model_version_by_alias("rnnlab-ner", ALIAS)
    assert rc == 0 and moved.run_id == other.info.run_id
    assert f"(was version {champion.version})" in out
    assert len(client.search_model_versions("name = 'rnnlab-ner'")) == 2


def test_register_without_any_model_says_so(tmp_path: Path, capsys: pytest.CaptureFixture
                                            ) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("ner")
    r = client.create_run(exp, tags={"model": "gru"})
    client.log_param(r.info.run_id, "task.monitor", "val/f1")
    client.log_metric(r.info.run_id, "val/f1", 0.5)
    client.set_terminated(r.info.run_id, "FINISHED")
    rc = compare_main(["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--no-log",
                       "--out", str(tmp_path / "report"), "--register"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error: no finished run with a logged model matches the filters" in err


def test_clis_take_the_champion_uri_as_a_checkpoint(
        store: dict[str, Any], lab: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnlab.cli.convert import main as convert_main
    from rnnlab.cli.generate import main as generate_main
    from rnnlab.cli.tag import main as tag_main

    assert _register(store, lab, capsys)[0] == 0
    client = MlflowClient(store["uri"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])

    def same(cli: Any, task: str, *args: str) -> str:
        champion = client.get_model_version_by_alias(f"rnnlab-{task}", ALIAS)
        run_dir = client.get_run(champion.run_id).data.tags["rnnlab.output_dir"]
        assert cli([f"models:/rnnlab-{task}@champion", *args]) == 0
        by_uri = capsys.readouterr().out
        assert cli([f"{run_dir}/checkpoints/best.ckpt", *args]) == 0
        assert capsys.readouterr().out == by_uri
        return by_uri

    assert "entities:" in same(tag_main, "ner", "--text", "Ann went to Oslo")
    assert same(generate_main, "charlm", "--prompt", "ROMEO:", "--length", "30").startswith(
        "ROMEO:")
    assert same(convert_main, "g2p", "bad", "mask").startswith("bad\t")

    # a name that is not registered, and a baseline without a checkpoint: one line each
    assert tag_main(["models:/rnnlab-nothing@champion", "--text", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: models:/rnnlab-nothing@champion cannot be read from the "
                          f"MLflow store {store['uri']}")
    assert len(err.strip().splitlines()) == 1
    assert tag_main(["models:/rnnlab-sentiment@champion", "--text", "x"]) == 2
    assert "is a baseline model without a checkpoint" in capsys.readouterr().err
