"""What a person reads: the config presets do what their docs say, the console and the
docs say what runs log (issue 30, part 9)."""

from __future__ import annotations

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
