"""The config schemas: a wrong type, unknown key or value outside its choices fails while the
config is composed, as one sentence naming the key, the value and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from conftest import compose_config
from rnnlab.build.schema import check_command_line, validate
from rnnlab.core.errors import ConfigError
from rnnlab.core.paths import config_dir

REPO = Path(__file__).resolve().parents[1]
GROUPS = {group: sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
          for group in ("model", "task", "trainer", "experiment")}


@pytest.mark.parametrize(("argv", "message"), [
    (["model.hidden_size=abc"],
     "model.hidden_size=abc is not a whole number; give one such as model.hidden_size=256."),
    (["model.init=xavir"],
     "model.init='xavir' is unknown; use one of default, xavier, orthogonal, identity (did you "
     "mean model.init=xavier?)."),
    (["task.crf=maybe"],
     "task.crf=maybe: task=sentiment has no setting crf; it is a setting of task=ner, so add "
     "task=ner."),
    (["task=ner", "task.crf=maybe"],
     "task.crf=maybe is not true or false; write task.crf=true or task.crf=false."),
    (["model.hiden_size=3"],
     "model.hiden_size=3: model=lstm has no setting hiden_size; did you mean "
     "model.hidden_size=3?"),
    (["-m", "model=lstm,gru", "model.init=xavir"], "model.init='xavir' is unknown"),
    (["task.datamodule.batch_size=0"], "task.datamodule.batch_size=0 must be a whole number"),
])
def test_command_line_mistakes_are_one_sentence(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_command_line(argv)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_types_fail_while_composing() -> None:
    with pytest.raises(ConfigCompositionException):
        compose_config(["task=ner", "task.crf=maybe"])
    with pytest.raises(ConfigCompositionException):
        compose_config(["model.hidden_size=abc"])


def test_choices_and_ranges_fail_in_validate() -> None:
    with pytest.raises(ConfigError, match=r"model.init='xavir' is unknown"):
        validate(compose_config(["model.init=xavir"]))
    with pytest.raises(ConfigError, match=r"model.hidden_size must be a positive integer, got 0"):
        validate(compose_config(["model.hidden_size=0"]))
    with pytest.raises(ConfigError, match=r"model.nhead=3 must be a positive divisor"):
        validate(compose_config(["model=transformer", "model.nhead=3"]))
    with pytest.raises(ConfigError, match=r"task.embeddings.path and task.embeddings.train"):
        validate(compose_config(["task.embeddings.path=a.txt", "task.embeddings.train=word2vec"]))


@pytest.mark.parametrize(("group", "name"), [(g, n) for g, names in GROUPS.items() for n in names])
def test_every_config_file_composes_and_validates(group: str, name: str, tmp_path: Path) -> None:
    validate(compose_config([f"{group}={name}"], tmp_path))


def test_keys_added_with_plus_still_compose(tmp_path: Path) -> None:
    for overrides in (["+task.module.max_predictions=5"],
                      ["model=naive", "+model.max_predictions=3"],
                      ["task=ner", "+task.embeddings.sg=false"], ["+trainer.strategy=ddp"]):
        validate(compose_config(overrides, tmp_path))


def test_train_refuses_a_bad_choice_before_any_folder(tmp_path: Path) -> None:
    env = {**os.environ, "RNNLAB_ROOT": str(tmp_path), "CI": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "model.init=xavir"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: model.init='xavir' is unknown; use one of default, xavier, orthogonal, identity "
        "(did you mean model.init=xavier?)."]
    assert not (tmp_path / "outputs").exists()
