"""Locating the project and its Hydra configs, and the resolvers the configs use."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from omegaconf import OmegaConf

PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # <root>/src/rnnlab/core -> <root>
PACKAGED_CONF = Path(__file__).resolve().parents[1] / "conf"  # the configs a wheel carries


def checkout_root() -> Path | None:
    """The checkout this module runs from (``python train.py``, an editable install), or
    None for an installed wheel."""
    if (PACKAGE_ROOT / "conf" / "config.yaml").is_file() and \
            (PACKAGE_ROOT / "src" / "rnnlab" / "core" / "paths.py").resolve() == Path(__file__).resolve():
        return PACKAGE_ROOT
    return None


def project_root() -> Path:
    """``RNNLAB_ROOT`` if set, else the checkout this package was installed from, else cwd.

    The data cache, prepared splits, mlflow.db and outputs all live under it, so runs
    launched from any directory (or by a Hydra launcher) share one store. An installed
    wheel has no checkout: ``rnnlab-train`` then keeps them under the folder it runs in."""
    env = os.environ.get("RNNLAB_ROOT")
    if env:
        return Path(env).resolve()
    return checkout_root() or Path.cwd().resolve()


def config_dir() -> Path:
    """The ``conf/`` folder: the project root's if it has one (a user's own configs), else
    the checkout's, else the copy an installed wheel carries (``rnnlab/conf``)."""
    candidate = project_root() / "conf"
    if (candidate / "config.yaml").is_file():
        return candidate
    checkout = checkout_root()
    return checkout / "conf" if checkout is not None else PACKAGED_CONF


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("run_tag"):
        # a short random tag, fixed for the process: two runs started in the same second
        # (two shells, a job array) must not share an output folder and its checkpoints
        OmegaConf.register_new_resolver("run_tag", lambda: uuid.uuid4().hex[:6],
                                        use_cache=True)
