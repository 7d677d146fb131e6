"""trainer=ddp reports what one process would: shards that score every example once, and
metrics reduced over the processes (sums and counts, merged span counts, gathered outputs).

Fast tests check the sharding and the reducers, the latter in two forked gloo processes.
The slow ones run ``train.py`` as a user would: a tiny checkpoint per task tested with two
processes and with one must give the same test metrics to 1e-6 (read back from MLflow).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import (
    REPO,
    compose_config,
    slow_except,
    tiny_run_parts,
    tiny_task_overrides,
)
from mlflow.tracking import MlflowClient
from torch.utils.data import DistributedSampler

import rnnlab.data.charlm as charlm
import rnnlab.data.synthetic as synthetic
import rnnlab.tracking.artifacts as artifacts
from rnnlab.build import build_datamodule, build_module
from rnnlab.core.dist import gather_objects
from rnnlab.core.errors import ConfigError
from rnnlab.data.batching import (
    BucketBatchSampler,
    RowShard,
    SkipEmptyCollate,
    global_batch_index,
    is_empty_batch,
    shard_batches,
)
from rnnlab.metrics.distributed import WeightedMean
from rnnlab.metrics.spans import SpanScorer


# ---- sharding ---------------------------------------------------------------------------
@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [0, 1, 5, 8])
def test_eval_shards_hold_every_batch_once_and_equal_counts(n: int, world: int) -> None:
    batches = [[i] for i in range(n)]
    shards = [shard_batches(batches, r, world, repeat=False) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # every rank steps equally (no hang)
    assert len(shards[0]) == math.ceil(n / world)
    real = sorted(b[0] for s in shards for b in s if b)
    assert real == list(range(n))  # each batch once, none repeated
    fillers = sum(1 for s in shards for b in s if not b)
    assert fillers == len(shards[0]) * world - n
    for r, shard in enumerate(shards):  # local batch i of rank r is global batch i*world+r
        for i, b in enumerate(shard):
            if b:
                assert b[0] == global_batch_index(i, r, world)


def test_train_shards_repeat_batches_to_equal_step_counts() -> None:
    batches = [[i] for i in range(5)]
    shards = [shard_batches(batches, r, 4, repeat=True) for r in range(4)]
    assert [len(s) for s in shards] == [2, 2, 2, 2]
    seen = [b[0] for s in shards for b in s]
    assert sorted(set(seen)) == list(range(5)) and len(seen) == 8  # 3 repeats, no filler
    assert shard_batches([[0]], 3, 4, repeat=True) == [[0]]  # fewer batches than ranks


@pytest.mark.parametrize("world", [2, 3])
def test_bucket_sampler_shards_are_the_single_process_batches(world: int) -> None:
    lengths = [1 + (i * 37) % 50 for i in range(203)]  # 203 = 12 full batches of 16 + 11
    one = list(BucketBatchSampler(lengths, 16, shuffle=False))
    shards = [BucketBatchSampler(lengths, 16, shuffle=False, num_replicas=world, rank=r)
              for r in range(world)]
    rebuilt: dict[int, list[int]] = {}
    for r, sampler in enumerate(shards):
        batches = list(sampler)
        assert len(batches) == len(sampler) == math.ceil(len(one) / world)
        rebuilt.update({global_batch_index(i, r, world): b for i, b in enumerate(batches) if b})
    assert [rebuilt[g] for g in range(len(one))] == one  # same batches, same order
    assert sorted(i for b in rebuilt.values() for i in b) == list(range(203))


def test_bucket_sampler_training_shards_cover_the_epoch_with_equal_counts() -> None:
    lengths = [1 + (i * 13) % 40 for i in range(330)]  # 11 batches of 32 (the last short)
    shards = [BucketBatchSampler(lengths, 32, shuffle=True, seed=5, num_replicas=2, rank=r)
              for r in range(2)]
    for s in shards:
        s.set_epoch(3)
    batches = [list(s) for s in shards]
    assert [len(b) for b in batches] == [len(s) for s in shards] == [6, 6]
    assert all(b for shard in batches for b in shard)  # training never gets a filler
    seen = [i for shard in batches for b in shard for i in b]
    assert set(seen) == set(range(330))  # each example; one batch repeated to even out
    assert len(seen) - 330 == len(batches[1][-1])


def test_bucket_sampler_refuses_lightnings_distributed_sampler() -> None:
    """Lightning re-creates a batch sampler around its DistributedSampler unless
    trainer.use_distributed_sampler=false; that must stop with the key to set."""
    inner = DistributedSampler(list(range(10)), num_replicas=2, rank=0)
    with pytest.raises(ConfigError, match="trainer.use_distributed_sampler=false"):
        BucketBatchSampler(inner, batch_size=4, drop_last=False)


def test_loaders_refuse_lightnings_sampler_injection_under_ddp(tmp_path: Path) -> None:
    dm = build_datamodule(compose_config(tiny_task_overrides("sentiment", tmp_path), tmp_path))
    dm.setup()
    connector = SimpleNamespace(use_distributed_sampler=True)
    dm.trainer = SimpleNamespace(world_size=2, _accelerator_connector=connector)
    with pytest.raises(ConfigError, match="set trainer.use_distributed_sampler=false"):
        dm.test_dataloader()
    connector.use_distributed_sampler = False  # what trainer=ddp sets
    assert len(dm.test_dataloader()) > 0


def test_empty_slots_collate_to_an_empty_batch_that_tasks_skip() -> None:
    collate = SkipEmptyCollate(lambda items: {"x": torch.tensor(items)})
    assert is_empty_batch(collate([]))
    assert not is_empty_batch(collate([1, 2]))


def test_row_shards_keep_each_row_once_in_eval_and_repeat_in_training() -> None:
    batch = {"x": torch.arange(10).view(5, 2), "reset": True, "names": list("abcde")}
    shards = [RowShard(r, 2, repeat=False)(batch) for r in range(2)]
    assert shards[0]["x"][:, 0].tolist() == [0, 4, 8] and shards[1]["names"] == ["b", "d"]
    assert shards[0]["reset"] is True
    tiny = {"x": torch.zeros(1, 3)}
    assert RowShard(1, 2, repeat=False)(tiny) == {}  # evaluation: nothing to score
    assert len(RowShard(1, 2, repeat=True)(tiny)["x"]) == 1  # training: a row to learn from


@pytest.mark.parametrize("task", ["charlm", "copy"])
def test_whole_batch_loaders_shard_rows(task: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Character streams and generated sets come in whole batches: each rank's test loader
    keeps its rows, in the same batches, and together the ranks hold every row once."""
    module = charlm if task == "charlm" else synthetic
    dm = build_datamodule(compose_config([*tiny_task_overrides(task, tmp_path),
                                          "task.datamodule.batch_size=7"], tmp_path))
    dm.prepare_data()
    dm.setup()
    whole = list(dm.test_dataloader())
    shards = []
    for rank in range(2):
        monkeypatch.setattr(module, "rank_world", lambda rank=rank: (rank, 2))
        shards.append(list(dm.test_dataloader()))
    assert len(shards[0]) == len(shards[1]) == len(whole)  # same steps on every rank
    for full, b0, b1 in zip(whole, *shards, strict=True):
        rows = sorted(map(tuple, [*b0["x"].tolist(), *b1["x"].tolist()]))
        assert rows == sorted(map(tuple, full["x"].tolist()))
        assert len(b0["x"]) - len(b1["x"]) in (0, 1)


# ---- reducers in two real processes ------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn: Callable[[int], Any], out: Any) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out.put((rank, fn(rank)))
    finally:
        dist.destroy_process_group()


def run_in_processes(fn: Callable[[int], Any], world: int = 2) -> list[Any]:
    """``fn(rank)`` in ``world`` forked processes joined by a gloo group; results by rank."""
    ctx = mp.get_context("fork")
    out = ctx.SimpleQueue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, fn, out)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive and all(p.exitcode == 0 for p in procs), "a rank failed or hung"
    results = dict(out.get() for _ in range(world))
    return [results[r] for r in range(world)]


# per rank: (batch means, batch sizes); 7 + 4 = 11 examples in all, an odd count
LOSSES = {0: ([0.5, 1.25, 2.0], [3, 3, 1]), 1: ([0.75], [4])}


def _weighted_means(rank: int) -> tuple[float, float]:
    metric = WeightedMean()
    for value, n in zip(*LOSSES[rank], strict=True):
        metric.update(torch.tensor(value), n)
    local = sum(v * n for v, n in zip(*LOSSES[rank], strict=True)) / sum(LOSSES[rank][1])
    return float(metric.compute()), local


def test_weighted_mean_reduces_sums_and_counts_not_means() -> None:
    values = [v for r in (0, 1) for v in LOSSES[r][0]]
    sizes = [n for r in (0, 1) for n in LOSSES[r][1]]
    exact = sum(v * n for v, n in zip(values, sizes, strict=True)) / sum(sizes)
    (m0, local0), (m1, local1) = run_in_processes(_weighted_means)
    assert m0 == m1 == pytest.approx(exact, abs=1e-12)
    assert abs((local0 + local1) / 2 - exact) > 0.03  # a mean of rank means is not it


GOLD = [["B-PER", "I-PER", "O"], ["B-LOC", "O"], ["O", "B-PER"], ["B-LOC", "I-LOC"]]
PRED = [["B-PER", "I-PER", "O"], ["B-PER", "O"], ["O", "O"], ["B-LOC", "I-LOC"]]


def _span_scores(rank: int) -> tuple[dict[str, float], list[int]]:
    scorer = SpanScorer()
    scorer.update(GOLD[rank::2], PRED[rank::2])
    return scorer.reduced().compute(), gather_objects([rank] * (rank + 1))


def test_span_counts_are_merged_over_ranks_before_scoring() -> None:
    whole = SpanScorer()
    whole.update(GOLD, PRED)
    expected = whole.compute()
    (s0, g0), (s1, g1) = run_in_processes(_span_scores)
    assert s0 == s1 == expected
    assert expected["f1"] == pytest.approx(4 / 7) and expected["acc"] == pytest.approx(7 / 9)
    assert g0 == g1 == [[0], [1, 1]]  # gather_objects: every rank, in rank order


# ---- one checkpoint, tested by one process and by two (Lightning, forked gloo) ------------
SCORE = {"sentiment": "test/acc", "ner": "test/f1", "g2p": "test/per", "charlm": "test/bpc",
         "copy": "test/recall_acc", "forecast": "test/mase", "translate": "test/chrf"}


# the default suite checks the three tasks of the DDP target (sentiment, NER with its CRF,
# g2p); the others gather through the same code and run in the slow suite
@pytest.mark.parametrize(("task", "epochs"), slow_except(
    [("sentiment", 1), ("ner", 1), ("g2p", 4), ("translate", 3), ("charlm", 1), ("copy", 1),
     ("forecast", 1)], ("sentiment", 1), ("ner", 1), ("g2p", 4)))
def test_two_processes_report_what_one_does(task: str, epochs: int, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lightning path without train.py: the same weights tested with devices=1 and
    with two forked gloo processes log the same test metrics (uneven shards, so a
    repeated or dropped example would show)."""
    # artifacts need the MLflow logger (the end-to-end tests below have it); without a
    # logger Lightning's trainer.log_dir is a collective that rank 0 would call alone
    monkeypatch.setattr(artifacts, "log_file", lambda *args, **kwargs: None)
    cfg, dm = tiny_run_parts(task, tmp_path)
    if task in ("sentiment", "ner", "g2p"):
        assert len(dm.datasets["test"]) == 30
    module = build_module(cfg, dm.spec)
    # gloo runs evaluation under no_grad, one process under inference mode; one mode for all
    common = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
              "enable_model_summary": False, "enable_checkpointing": False,
              "use_distributed_sampler": False, "inference_mode": False,
              "default_root_dir": str(tmp_path)}  # anything written stays in the test's folder
    pl.Trainer(max_epochs=epochs, **common).fit(module, datamodule=dm)
    one = pl.Trainer(devices=1, **common).test(module, datamodule=dm, verbose=False)[0]
    two = pl.Trainer(devices=2, strategy="ddp_fork", **common).test(module, datamodule=dm,
                                                                    verbose=False)[0]
    assert set(one) == set(two) and len(one) >= 3
    assert {k: abs(one[k] - two[k]) for k in one} == pytest.approx(dict.fromkeys(one, 0.0),
                                                                   abs=1e-6)
    assert 0.0 < one[SCORE[task]] < (1.0 if task in ("sentiment", "ner", "g2p", "copy")
                                      else 100.0)  # a real score, not a trivial 0 or 1


# ---- end to end: train.py with trainer=ddp_cpu, as a user runs it -----------------------
def _lab(root: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python train.py <args>`` in its own process group (DDP starts a second process),
    killed as a whole if it hangs."""
    env = {**os.environ, "CI": "1", "RNNLAB_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    (root / "conf").exists() or (root / "conf").symlink_to(REPO / "conf")
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    start = time.monotonic()
    try:
        out, err = proc.communicate(timeout=timeout)
        print(f"[{time.monotonic() - start:5.1f} s] train.py {' '.join(args[-3:])}")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"train.py {' '.join(args)} hung for {timeout} s:\n{err[-3000:]}")
    assert proc.returncode == 0, f"train.py {' '.join(args)} failed:\n{err[-5000:]}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _runs(root: Path, experiment: str) -> tuple[MlflowClient, list]:
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], order_by=["attributes.start_time"])


def _artifact(client: MlflowClient, run_id: str, path: str, dest: Path) -> str:
    dest.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dest))).read_text(encoding="utf-8")


# every example of the test split, on every rank count: no per-rank batch limit
FULL_TEST = ["trainer.limit_val_batches=null", "trainer.limit_test_batches=null"]
E2E = {  # the tiny presets, on the tests' own data
    "sentiment": ["experiment=sentiment_tiny", "model=gru", "task.datamodule.min_freq=1"],
    "ner": ["experiment=ner_tiny", "model=bilstm", "task.crf=true"],
    "g2p": ["experiment=g2p_tiny", "model=gru", "task.optimizer.lr=0.01",
            "trainer.max_epochs=3"],
}
EXAMPLES = {"ner": "ner/test_examples.txt", "g2p": "examples/test_examples.tsv"}


@pytest.mark.slow
@pytest.mark.parametrize(("task", "train_on"), [("sentiment", "cpu"), ("ner", "cpu"),
                                                ("g2p", "ddp_cpu")])
def test_checkpoint_tested_by_two_processes_equals_one(task: str, train_on: str,
                                                       tmp_path: Path) -> None:
    """Train a tiny checkpoint (g2p with two processes, which also checks validation and
    checkpointing under DDP; the others with one, to save time), then test it with two
    processes and with one: every test metric equal to 1e-6 (read back from MLflow), the
    same examples, one FINISHED MLflow run per command."""
    data = tiny_task_overrides(task, tmp_path)
    overrides = [*E2E[task], *(o for o in data if o.startswith("task.data")),
                 "model.hidden_size=16", "task.datamodule.batch_size=7", *FULL_TEST]
    _lab(tmp_path, *overrides, f"trainer={train_on}")
    client, (trained,) = _runs(tmp_path, task)
    best = Path(trained.data.tags["rnnlab.output_dir"]) / "checkpoints" / "best.ckpt"
    for devices in (2, 1):
        _lab(tmp_path, *overrides, "train=false", f"ckpt_path={best}", "trainer=ddp_cpu",
             f"trainer.devices={devices}")
    client, runs = _runs(tmp_path, task)
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    two, one = runs[1], runs[2]
    assert two.data.tags["rnnlab.evaluates"] == one.data.tags["rnnlab.evaluates"] == \
        trained.info.run_id
    m1 = {k: v for k, v in one.data.metrics.items() if k.startswith("test/")}
    m2 = {k: v for k, v in two.data.metrics.items() if k.startswith("test/")}
    assert set(m1) == set(m2) and len(m1) >= 3
    diffs = {k: abs(m1[k] - m2[k]) for k in m1}
    print(f"{task}: test metric: (1 process, |1 - 2 processes|): "
          f"{ {k: (round(m1[k], 6), diffs[k]) for k in sorted(m1)} }")
    assert max(diffs.values()) <= 1e-6
    if task in EXAMPLES:
        texts = [_artifact(client, r.info.run_id, EXAMPLES[task], tmp_path / r.info.run_id)
                 for r in (one, two)]
        assert texts[0] == texts[1] and texts[0].strip()


@pytest.mark.slow
def test_ddp_run_resumes_from_last_checkpoint(tmp_path: Path) -> None:
    """A two-process run stopped after its first epoch continues from last.ckpt with two
    processes: the same MLflow run, the epoch count moves on, validation is logged once
    per epoch."""
    data = [o for o in tiny_task_overrides("sentiment", tmp_path) if o.startswith("task.data")]
    overrides = [*E2E["sentiment"], *data, "model.hidden_size=16", "trainer=ddp_cpu",
                 "callbacks.early_stopping=null"]
    _lab(tmp_path, *overrides, "trainer.max_epochs=1")
    client, (run,) = _runs(tmp_path, "sentiment")
    last = Path(run.data.tags["rnnlab.output_dir"]) / "checkpoints" / "last.ckpt"
    assert last.is_file()
    _lab(tmp_path, *overrides, "trainer.max_epochs=3", f"ckpt_path={last}")
    client, runs = _runs(tmp_path, "sentiment")
    assert [r.info.run_id for r in runs] == [run.info.run_id]  # continued, never forked
    assert runs[0].info.status == "FINISHED"
    # three validations (a restart from scratch would make four), at growing steps
    val = client.get_metric_history(run.info.run_id, "val/acc")
    steps = [m.step for m in sorted(val, key=lambda m: m.timestamp)]
    assert len(steps) == 3 and steps == sorted(set(steps))
    epochs = {m.value for m in client.get_metric_history(run.info.run_id, "epoch")}
    assert {0, 1, 2} <= epochs
