"""The installable package: a wheel that carries conf/, installed into a fresh venv, trains
from any folder and keeps the data, outputs and MLflow store under that folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers import write_sentiment_csv

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("src", "conf", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")


def build_wheel(out: Path) -> Path:
    """``pip wheel`` of a clean copy of the sources (no build/ left in the checkout), with
    the setuptools already installed (no download)."""
    tree = out / "source"
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info", "local"))
        else:
            tree.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(out / "dist"), str(tree)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (out / "dist").glob("rnnlab-*.whl")
    return wheel


def test_the_wheel_carries_every_config(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"rnnlab/conf/{p.relative_to(REPO / 'conf').as_posix()}"
               for p in (REPO / "conf").rglob("*.yaml") if "local" not in p.parts}
    assert len(configs) > 50 and configs <= names
    assert {"rnnlab/serving/model_code.py", "rnnlab/report/registry.py",
            "hydra_plugins/rnnlab_optuna/sweeper.py"} <= names


@pytest.mark.slow
def test_an_installed_wheel_trains_from_any_folder(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    # a fresh venv that sees this environment's packages (torch, mlflow, ...) through a
    # path file, but not the checkout: rnnlab comes from the wheel alone
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True,
                          check=True).stdout.strip()
    Path(site, "_shared_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("RNNLAB_ROOT", "MLFLOW_TRACKING_URI", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(CI="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           str(wheel)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    work = tmp_path / "work"
    work.mkdir()
    write_sentiment_csv(work / "reviews.csv")
    where = subprocess.run([str(python), "-c", "import rnnlab.core.paths as c; print(c.__file__); "
                            "print(c.config_dir()); print(c.project_root())"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(site)  # the installed package, not the checkout
    assert where[1] == f"{site}/rnnlab/conf" and where[2] == str(work.resolve())

    proc = subprocess.run([str(venv / "bin" / "rnnlab-train"), "model=gru", "trainer=debug",
                           "task.data.train=reviews.csv", "task.datamodule.min_freq=1",
                           "model.hidden_size=16", "model.embedding_dim=16"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test/acc" in proc.stdout
    assert (work / "mlflow.db").is_file() and (work / "mlartifacts").is_dir()
    assert list((work / "outputs").glob("runs/sentiment/*/checkpoints/best.ckpt"))
    uri = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("model: "))

    # the logged model names the package as its requirement and predicts in that venv
    check = ("import json, mlflow, pandas as pd\n"
             f"mlflow.set_tracking_uri('sqlite:///{work}/mlflow.db')\n"
             f"local = mlflow.artifacts.download_artifacts('{uri}')\n"
             "reqs = open(local + '/requirements.txt').read().split()\n"
             f"out = mlflow.pyfunc.load_model('{uri}').predict(pd.DataFrame({{'text': ['good']}}))\n"
             "print(json.dumps({'reqs': reqs, 'label': out['label'][0]}))\n")
    proc = subprocess.run([str(python), "-c", check], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "rnnlab==0.1.0" in answer["reqs"] and answer["label"] in ("positive", "negative")
    data_dir = subprocess.run(
        [str(python), "-c", "from mlflow.tracking import MlflowClient as C; "
         f"c = C('sqlite:///{work}/mlflow.db'); "
         "r = c.search_runs([c.get_experiment_by_name('sentiment').experiment_id])[0]; "
         "print(r.data.params['paths.data_dir'])"],
        cwd=work, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert data_dir == f"{work.resolve()}/data"
