"""``compare.py --register`` names each task's best model ``rnnlab-<task>@champion`` (by the
task's own metric and direction), and the CLIs take such a URI wherever a checkpoint goes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import pytest
from helpers import compose_config, write_cmudict, write_conll, write_sentiment_csv, write_text
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

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

    def get_registered_model(self, name: str) -> SimpleNamespace:
        raise MlflowException(f"Registered Model with name={name} not found")


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
                          f"logger.mlflow.tracking_uri=sqlite:///{root}/mlflow.db", *overrides],
                         log_model=True)
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
    """--register with --force: these tiny models need not beat their trivial baselines."""
    rc = compare_main(["--tracking-uri", store["uri"], "--no-log", "--out",
                       str(lab / "report"), "--register", "--force", *extra])
    return rc, capsys.readouterr().out


def _name(run: Any) -> str:
    """The registered name of a run on a user's file: rnnlab-<task>-<fingerprint[:8]>."""
    return f"rnnlab-{run.data.tags['task']}-{run.data.tags['data_fingerprint'][:8]}"


def test_register_names_each_tasks_best_run_and_moves_the_alias(
        store: dict[str, Any], lab: Path, capsys: pytest.CaptureFixture) -> None:
    rc, out = _register(store, lab, capsys)
    assert rc == 0
    client = MlflowClient(store["uri"])
    first, second = (r for _, r in store["ner"])
    best = max((first, second), key=lambda r: (r.data.metrics["best/val/f1"],
                                               -r.info.start_time))
    ner = _name(best)  # the runs read a user's file: a name of their own
    champion = client.get_model_version_by_alias(ner, ALIAS)
    assert champion.run_id == best.info.run_id
    assert champion.source == best.data.tags[MODEL_URI_TAG]
    assert f"{ner}@champion -> version {champion.version}" in out
    assert {m.name for m in client.search_registered_models()} == {
        _name(store[t][1]) for t in ("sentiment", "charlm", "g2p")} | {ner}
    # the registered sentiment champion predicts raw text through pyfunc
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model(f"models:/{_name(store['sentiment'][1])}@champion")
    assert set(model.predict(__import__("pandas").DataFrame(
        {"text": ["a great movie", "an awful film"]}))) <= {"positive", "negative"}

    # registering again changes nothing
    rc, out = _register(store, lab, capsys)
    assert rc == 0 and "(unchanged)" in out
    assert len(client.search_model_versions(f"name = '{ner}'")) == 1

    # the other run becomes the best: a new version carries the alias, the old one stays
    other = second if best is first else first
    client.log_metric(other.info.run_id, "best/val/f1", 1.0)
    rc, out = _register(store, lab, capsys, "--tasks", "ner")
    moved = client.get_model_version_by_alias(ner, ALIAS)
    assert rc == 0 and moved.run_id == other.info.run_id
    assert f"(was version {champion.version})" in out
    assert len(client.search_model_versions(f"name = '{ner}'")) == 2


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
        name = _name(store[task][0][1] if task == "ner" else store[task][1])
        champion = client.get_model_version_by_alias(name, ALIAS)
        run_dir = client.get_run(champion.run_id).data.tags["rnnlab.output_dir"]
        assert cli([f"models:/{name}@champion", *args]) == 0
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
    assert tag_main([f"models:/{_name(store['sentiment'][1])}@champion", "--text", "x"]) == 2
    assert "is a baseline model without a checkpoint" in capsys.readouterr().err


# ---- one notion of best, honestly: data groups, trivial baselines, MLflow's own links -------
def _planted(client: MlflowClient, task: str, model: str, monitor: str, mode: str,
             history: list[float], fingerprint: str = "builtin0", seed: int = 1,
             params: dict[str, str] | None = None, metrics: dict[str, list[float]] | None = None,
             log_model: bool = True) -> str:
    """A finished run with a logged model (no weights: the registry only needs its URI);
    ``history``: the monitored metric per validation round, its best as ``best/<monitor>``."""
    exp = client.get_experiment_by_name(task)
    exp_id = exp.experiment_id if exp else client.create_experiment(task)
    rid = client.create_run(exp_id, tags={"task": task, "model": model, "seed": str(seed),
                                          "data_fingerprint": fingerprint}).info.run_id
    for k, v in {"task.monitor": monitor, "task.mode": mode, **(params or {})}.items():
        client.log_param(rid, k, v)
    for step, v in enumerate(history):
        client.log_metric(rid, monitor, v, step=step)
    for key, values in (metrics or {}).items():
        for step, v in enumerate(values):
            client.log_metric(rid, key, v, step=step)
    if history:
        client.log_metric(rid, f"best/{monitor}", max(history) if mode == "max" else min(history))
    if log_model:
        logged = client.create_logged_model(exp_id, source_run_id=rid, name="model")
        client.set_tag(rid, MODEL_URI_TAG, logged.model_uri)
    client.set_terminated(rid, "FINISHED")
    return rid


def _compare(uri: str, tmp_path: Path, *extra: str) -> int:
    return compare_main(["--tracking-uri", uri, "--no-log", "--resamples", "0", "--out",
                         str(tmp_path / "rep"), *extra])


def test_a_model_that_does_not_beat_its_trivial_baseline_is_refused_unless_forced(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    _planted(client, "ner", "gru", "val/f1", "max", [0.0, 0.0])  # all-O: entity F1 0
    _planted(client, "sentiment", "gru", "val/acc", "max", [0.50, 0.55],
             params={"data.majority_val_acc": "0.6"})  # below always-the-majority-class
    _planted(client, "adding", "lstm", "val/loss", "min", [0.17, 0.05],
             metrics={"val/baseline_loss": [0.167, 0.167]})  # beats the memoryless answer
    _planted(client, "charlm", "gru", "val/loss", "min", [2.0, 1.9])  # no trivial baseline
    # forecast: the window loss is best at step 0, where the MAE is worse than seasonal
    # naive's; its last MAE (step 1) would beat it, but that is not the kept model
    _planted(client, "forecast", "lstm", "val/loss", "min", [0.10, 0.20],
             metrics={"val/mae": [12.0, 8.0]})
    _planted(client, "forecast", "seasonal_naive", "val/loss", "min", [],
             metrics={"val/mae": [10.0]}, log_model=False)
    assert _compare(uri, tmp_path, "--register") == 2
    captured = capsys.readouterr()
    refused = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(refused) == 3 and all(line.endswith("pass --force to register it anyway.")
                                     for line in refused)
    assert any(line.startswith("error: rnnlab-ner was not registered: gru seed 1") and
               "val/f1 0.0000, which does not beat tagging every token O" in line
               for line in refused)
    assert any("rnnlab-sentiment" in line and "always the most frequent training class "
               "(0.6000)" in line for line in refused)
    assert any("rnnlab-forecast" in line and "val/mae 12.0000, which does not beat seasonal "
               "naive (10.0000)" in line for line in refused)
    assert "rnnlab-adding@champion -> version 1" in captured.out
    assert "note: charlm: no trivial baseline known, not checked." in captured.out
    assert {m.name for m in client.search_registered_models()} == {"rnnlab-adding",
                                                                   "rnnlab-charlm"}
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "--register refuses it without --force." in report
    assert _compare(uri, tmp_path, "--register", "--force") == 0
    assert {"rnnlab-ner", "rnnlab-sentiment", "rnnlab-forecast"} <= {
        m.name for m in client.search_registered_models()}


def test_a_run_on_a_users_file_never_becomes_the_champion_of_the_builtin_data(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The user's 200-sentence file scores higher (and was trained first), yet rnnlab-ner
    stays the champion of the built-in data; the user's run gets a name of its own, and
    the report ranks the two groups apart."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    user = _planted(client, "ner", "bilstm", "val/f1", "max", [0.95], fingerprint="f00dcafe" * 2,
                    params={"task.data.train": "/home/u/mine.conll"})
    msra = [_planted(client, "ner", "gru", "val/f1", "max", [v], fingerprint="a1b2c3d4" * 2,
                     seed=s, params={"task.data.train": "null"})
            for s, v in ((1, 0.80), (2, 0.85))]
    assert _compare(uri, tmp_path, "--register") == 0
    out = capsys.readouterr().out
    assert client.get_model_version_by_alias("rnnlab-ner", ALIAS).run_id == msra[1]
    assert client.get_model_version_by_alias("rnnlab-ner-f00dcafe", ALIAS).run_id == user
    assert client.get_registered_model("rnnlab-ner").tags["data_fingerprint"] == "a1b2c3d4" * 2
    assert "rnnlab-ner-f00dcafe@champion -> version 1: bilstm" in out
    with open(tmp_path / "rep" / "report.csv", newline="") as f:
        rows = {r["task"]: r for r in __import__("csv").DictReader(f)}
    assert rows["ner"]["model"] == "gru" and rows["ner"]["rank"] == "1"
    assert rows["ner-f00dcafe"]["model"] == "bilstm" and rows["ner-f00dcafe"]["rank"] == "1"
    # a later run on other built-in settings does not take the bound name either
    later = _planted(client, "ner", "lstm", "val/f1", "max", [0.99], fingerprint="b" * 16,
                     params={"task.data.train": "null"})
    assert _compare(uri, tmp_path, "--register") == 0
    assert client.get_model_version_by_alias("rnnlab-ner", ALIAS).run_id == msra[1]
    assert client.get_model_version_by_alias("rnnlab-ner-bbbbbbbb", ALIAS).run_id == later


def test_the_logged_model_lists_its_registered_version(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """Registered as mlflow.register_model does: the logged model's page (its tag
    mlflow.modelVersions) names the version; registering again adds nothing."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    rid = _planted(client, "charlm", "gru", "val/loss", "min", [1.5])
    model_id = client.get_run(rid).data.tags[MODEL_URI_TAG].removeprefix("models:/")
    for _ in range(2):
        assert _compare(uri, tmp_path, "--register") == 0
    versions = __import__("json").loads(
        client.get_logged_model(model_id).tags["mlflow.modelVersions"])
    assert versions == [{"name": "rnnlab-charlm", "version": 1}]
    assert str(client.get_model_version_by_alias("rnnlab-charlm", ALIAS).version) == "1"
    assert "(unchanged)" in capsys.readouterr().out
