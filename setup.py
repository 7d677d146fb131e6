"""Build hook: the wheel carries the Hydra configs of the top-level ``conf/``.

``conf/`` stays the one source of the configs (the checkout and an editable install read
it in place); a built wheel gets a copy as the package data ``rnnlab/conf/``, where
``rnnlab.core.paths.config_dir()`` finds it when rnnlab is installed. Everything else about
the package is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildWithConfigs(build_py):
    """``build_py`` plus ``conf/**/*.yaml`` -> ``rnnlab/conf/`` (an editable install skips
    it: it reads ``conf/`` from the checkout). ``conf/local/`` holds a user's own machine
    settings and never ships."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "rnnlab" / "conf"
        shutil.rmtree(target, ignore_errors=True)  # no stale configs from an earlier build
        for source in sorted(CONF.rglob("*.yaml")):
            relative = source.relative_to(CONF)
            if relative.parts[0] == "local":
                continue
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)


setup(cmdclass={"build_py": BuildWithConfigs})
