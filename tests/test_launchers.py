"""Cluster launchers: hydra/launcher=slurm (submitit on SLURM) and slurm_local (same code path here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from rnnlab.core.errors import ConfigError
from rnnlab.core.paths import config_dir
from rnnlab.tracking.sweep import check_launcher

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("config", overrides=[f"hydra.sweep.dir={tmp_path}/sweep", *overrides],
                       return_hydra_config=True)


class _Submitted(Exception):
    """Raised instead of calling sbatch; carries the script submitit wrote."""


def test_slurm_array_asks_slurm_for_what_the_trainer_needs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hydra's launcher -> submitit -> the sbatch script, stopped just before sbatch."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")

    def capture(self: submitit.SlurmExecutor, command: str) -> None:
        raise _Submitted(self._make_submission_file_text(command, "uid"),
                         self.max_num_timeout)

    monkeypatch.setattr(submitit.SlurmExecutor, "_submit_command", capture)
    cfg = _config(tmp_path, "hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4",
                  "trainer.num_nodes=2", "hydra.launcher.partition=gpu")
    check_launcher(cfg)  # counts are fine
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    with pytest.raises(_Submitted) as sent:
        launcher.launch([["model=lstm"], ["model=gru"], ["model=rnn"]], initial_job_idx=0)
    script, max_num_timeout = sent.value.args
    for line in ("--partition=gpu", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4",
                 "--cpus-per-task=4", "--mem=32GB", "--time=240", "--signal=USR2@120",
                 "--array=0-2%3"):
        assert f"#SBATCH {line}\n" in script, line
    assert max_num_timeout == 3  # requeued up to 3 times after a time-out


def test_launchers_refuse_counts_slurm_cannot_use(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # trainer=ddp means "all GPUs" (-1): no job can be sized from that
    with pytest.raises(ConfigError, match=r"gpus_per_node=-1 .* trainer.devices=N"):
        check_launcher(_config(tmp_path, "hydra/launcher=slurm_local", "trainer=ddp"))
    check_launcher(_config(tmp_path, "hydra/launcher=slurm_local", "trainer=ddp",
                           "trainer.devices=2"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun here
    with pytest.raises(ConfigError, match="hydra/launcher=slurm_local"):
        check_launcher(_config(tmp_path, "hydra/launcher=slurm", "trainer.devices=1"))
    check_launcher(_config(tmp_path))  # the basic launcher is none of its business


@pytest.mark.slow  # two jobs in submitit processes: about 40 s on an idle 2-core machine
def test_slurm_local_sweep_groups_jobs_under_one_parent(tmp_path: Path,
                                                        sentiment_csv: Path) -> None:
    models = ["rnn", "gru"]
    env = {**os.environ, "CI": "1", "RNNLAB_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    (tmp_path / "conf").symlink_to(REPO / "conf")
    sweep = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), "-m", f"model={','.join(models)}",
         "trainer=debug", f"task.data.train={sentiment_csv}", "task.datamodule.min_freq=1",
         "hydra/launcher=slurm_local", f"hydra.sweep.dir={tmp_path}/sweep"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    proc_pid = sweep.pid
    _, stderr = sweep.communicate(timeout=900)
    assert sweep.returncode == 0, stderr[-3000:]
    # each job ran in a submitit process of its own: a folder named by its process id,
    # with its log and pickled result
    jobs = [p for p in (tmp_path / "sweep" / ".submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == len(models) and str(proc_pid) not in {j.name for j in jobs}
    assert all(list(j.glob("*_result.pkl")) for j in jobs)

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sentiment").experiment_id])
    parents = [r for r in runs if r.data.tags.get("rnnlab_role") == "sweep_parent"]
    children = [r for r in runs if r not in parents]
    assert len(parents) == 1 and len(children) == len(models)
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/n_finished"] == len(models)
    assert sorted(c.data.tags["model"] for c in children) == sorted(models)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["sweep_id"] == parent.data.tags["sweep_id"]


@pytest.mark.slow  # about a minute: 60 short epochs, interrupted once
def test_a_preempted_job_is_requeued_and_continues_its_own_run(tmp_path: Path,
                                                               sentiment_csv: Path) -> None:
    """submitit's pre-emption signal (USR2) requeues the job; ckpt_path=auto resumes it."""
    # enough epochs (a debug epoch takes ~0.05 s on a fast CPU) that the signal lands in
    # training, not in the test and model logging after it
    epochs = 60
    env = {**os.environ, "CI": "1", "RNNLAB_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    (tmp_path / "conf").symlink_to(REPO / "conf")
    sweep = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), "-m", "model=gru", "trainer=debug",
         f"trainer.max_epochs={epochs}", "callbacks.early_stopping.patience=100",
         "ckpt_path=auto", f"task.data.train={sentiment_csv}", "task.datamodule.min_freq=1",
         "hydra/launcher=slurm_local"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    multiruns = tmp_path / "outputs" / "multiruns"
    deadline = time.monotonic() + 300
    while not list(multiruns.glob("*/*/checkpoints/last.ckpt")):  # an epoch is saved
        assert time.monotonic() < deadline and sweep.poll() is None, "no epoch was saved"
        time.sleep(0.2)
    # pre-empt the job: submitit's controller is the job id, the task its child process
    controller = next(p.name for p in multiruns.glob("*/.submitit/*") if p.name.isdigit())
    task = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()[0]
    os.kill(int(task), signal.SIGUSR2)
    _, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, stderr[-3000:]
    logs = "".join(p.read_text() for p in multiruns.glob("*/.submitit/*/*_log.*"))
    assert "this job is preempted" in logs and "Requeued job" in logs

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sentiment").experiment_id])
    children = [r for r in runs if r.data.tags.get("rnnlab_role") != "sweep_parent"]
    assert len(children) == 1  # the second attempt continued the first attempt's run
    run = children[0]
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]
    assert len(steps) == epochs == len(set(steps))  # every epoch once, none twice
