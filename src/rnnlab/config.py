"""Locating the project and its Hydra configs, and the resolvers the configs use."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from omegaconf import OmegaConf

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # <root>/src/rnnlab -> <root>


def project_root() -> Path:
    """``RNNLAB_ROOT`` if set, else the checkout this package was installed from, else cwd.

    The data cache, prepared splits, mlflow.db and outputs all live under it, so runs
    launched from any directory (or by a Hydra launcher) share one store."""
    env = os.environ.get("RNNLAB_ROOT")
    if env:
        return Path(env).resolve()
    if (PACKAGE_ROOT / "conf" / "config.yaml").is_file():
        return PACKAGE_ROOT
    return Path.cwd().resolve()


def config_dir() -> Path:
    """The ``conf/`` folder: under the project root if it has one, else the checkout's."""
    candidate = project_root() / "conf"
    return candidate if candidate.is_dir() else PACKAGE_ROOT / "conf"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("run_tag"):
        # a short random tag, fixed for the process: two runs started in the same second
        # (two shells, a job array) must not share an output folder and its checkpoints
        OmegaConf.register_new_resolver("run_tag", lambda: uuid.uuid4().hex[:6],
                                        use_cache=True)
