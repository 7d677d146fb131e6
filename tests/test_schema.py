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
    # a later value of a sweep that cannot even be composed stops the sweep before any job
    (["-m", "experiment=adding_tiny", "trainer.max_epochs=1,abc,2"],
     "trainer.max_epochs=abc is not a whole number"),
    (["task.datamodule.batch_size=0"], "task.datamodule.batch_size=0 must be a whole number"),
])
def test_command_line_mistakes_are_one_sentence(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_command_line(argv)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_later_sweep_value_out_of_range_is_left_to_its_job() -> None:
    """-4 composes (it is a whole number): its job ends FAILED with the sentence while the
    other jobs run (tests/test_record_faults.py), so the command line lets it through."""
    check_command_line(["-m", "experiment=adding_tiny", "model.hidden_size=8,-4,16"])


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


# ---- the checks the classes made themselves before the schemas (same sentences) ---------------
@pytest.mark.parametrize(("overrides", "message"), [
    (["model.hidden_size=0"], "model.hidden_size must be a positive integer, got 0."),
    (["model.num_layers=0"], "model.num_layers must be a positive integer, got 0."),
    (["model.dropout=1.5"], "model.dropout must be in [0, 1), got 1.5."),
    (["model.embedding_dim=0"], "model.embedding_dim must be a positive integer, got 0."),
    (["model=mingru", "model.init=orthogonal"],
     "model.init='orthogonal' does not apply to model.cell=mingru; use one of default, xavier."),
    (["model.pack=sometimes"], "model.pack='sometimes' is unknown; use one of auto, always, never"),
    (["model=transformer", "model.d_model=0"], "model.d_model must be a positive integer, got 0."),
    (["model=transformer", "model.num_layers=0"], "model.num_layers must be a positive integer"),
    (["model=transformer", "model.dropout=1.0"], "model.dropout must be in [0, 1), got 1.0."),
    (["task.module.pooling=sum"], "task.module.pooling='sum' is unknown; use one of last, mean, max"),
    (["task=g2p", "task.attention=cosine"], "task.attention='cosine' is unknown"),
    (["task=g2p", "task.context=mean"], "task.context='mean' is unknown"),
    (["task=translate", "task.context_feed=start"], "task.context_feed='start' is unknown"),
    (["task=g2p", "task.module.dropout=1.0"], "task.module.dropout must be in [0, 1), got 1.0."),
    (["task=g2p", "task.module.decoder_layers=0"],
     "task.module.decoder_layers must be a positive integer or null, got 0."),
    (["task=g2p", "task.module.encoder_dropout=-0.1"],
     "task.module.encoder_dropout must be in [0, 1), got -0.1."),
    (["task=names", "model=gru", "task.condition=start"], "task.condition='start' is unknown"),
    (["task=names", "model=gru", "task.module.dropout=1.0"], "task.module.dropout must be in [0, 1)"),
    (["task=forecast", "model=ets", "model.trend=linear"], "model.trend='linear' is unknown"),
    (["task=forecast", "model=ets", "model.trend=null", "model.damped_trend=true"],
     "model.damped_trend=true needs a trend"),
    (["task=forecast", "model=arima", "model.order=[1,1]"],
     "model.order must be three non-negative integers (p, d, q), got [1, 1]."),
    (["task=forecast", "model=arima", "model.seasonal_order=[0,-1,1]"],
     "model.seasonal_order must be null or three non-negative integers"),
    (["task=forecast", "task.strategy=both"], "task.strategy='both' is unknown"),
    (["task=forecast", "task.window=0"], "task.window must be a positive integer, got 0."),
    (["task=forecast", "task.val_size=0"], "task.val_size must be a positive integer, got 0."),
    (["task=forecast", "task.season=0"], "task.season must be a positive integer or null, got 0."),
    (["task=forecast", "task.transform.scale=robust"], "task.transform.scale='robust' is unknown"),
    (["task=charlm", "task.datamodule.holdout=[0.1,0.6]"],
     "task.datamodule.holdout must be two shares (val, test) between 0 and 0.5"),
    (["task=charlm", "task.datamodule.seq_len=0"], "task.datamodule.seq_len must be a positive"),
    (["task=charlm", "task.datamodule.batch_size=0"], "task.datamodule.batch_size=0 must be a"),
    (["task=charlm", "task.datamodule.eval_streams=0"],
     "task.datamodule.eval_streams must be a positive integer or null, got 0."),
    (["task=charlm", "task.datamodule.batches_per_epoch=0"],
     "task.datamodule.batches_per_epoch must be a positive integer or null"),
    (["task=copy", "task.datamodule.n_symbols=0"], "task.datamodule.n_symbols must be >= 1"),
    (["task=copy", "task.datamodule.batch_size=0"], "task.datamodule.batch_size=0 must be a whole"),
    (["task.datamodule.split=[0.8,0.3,0.1]"],
     "task.datamodule.split must be three positive fractions (train, val, test) summing to 1"),
    (["task.embeddings.path=a.txt", "task.embeddings.train=word2vec"],
     "task.embeddings.path and task.embeddings.train are both set"),
    (["task.embeddings.corpus=c.txt"], "task.embeddings.corpus is only read to train vectors"),
    (["task.embeddings.train=glove"], "task.embeddings.train='glove' is unknown"),
    (["task.embeddings.format=word2vec"], "task.embeddings.format='word2vec' is unknown"),
    (["task.embeddings.train=word2vec", "task.embeddings.dim=0"],
     "task.embeddings.dim=0 must be a whole number of at least 1."),
    (["task.datamodule.min_freq=0"], "task.datamodule.min_freq must be a positive integer, got 0."),
    (["task.datamodule.max_len=0"], "task.datamodule.max_len must be a positive integer, got 0."),
    (["task=names", "model=gru", "task.condition=steps"], "task.condition='steps' is unknown"),
    (["task=names", "model=gru", "task.category_dim=0"], "task.category_dim must be a positive"),
    (["task=names", "model=gru", "task.datamodule.max_len=0"],
     "task.datamodule.max_len must be a positive integer, got 0."),
    (["task=g2p", "task.datamodule.max_len=0"], "task.datamodule.max_len must be a positive"),
    (["task=ner", "task.datamodule.bigram_window=prev"],
     "task.datamodule.bigram_window='prev' is unknown; use one of next, both"),
    (["task=ner", "task.datamodule.bigram_min_count=0"],
     "task.datamodule.bigram_min_count must be a positive integer, got 0."),
    (["task=translate", "task.src=l", "task.tgt=l"],
     "task.src and task.tgt are both 'l'; translate between two different translations."),
    (["task=translate", "task.datamodule.min_len=5", "task.datamodule.max_len=2"],
     "task.datamodule.min_len=5 and max_len=2 must satisfy 1 <= min_len <= max_len."),
    (["task=translate", "task.datamodule.split_by=verse"],
     "task.datamodule.split_by='verse' is unknown"),
    (["task=translate", "task.datamodule.min_freq=0"], "task.datamodule.min_freq must be a"),
    # the task modules' own checks before the schemas (tasks/*.py, task.backbone in models/)
    (["task.module.word_dropout=1.5"], "task.module.word_dropout must be in [0, 1], got 1.5."),
    (["task=ner", "task.module.word_dropout_max_count=0"],
     "task.module.word_dropout_max_count must be a positive integer, got 0."),
    (["task=ner", "task.module.feature_position=middle"],
     "task.module.feature_position='middle' is unknown; use one of input, output."),
    (["task=ner", "task.module.bigram_dim=0"], "task.module.bigram_dim must be a positive"),
    (["task=ner", "+task.module.case_dim=0"], "task.module.case_dim must be a positive integer"),
    (["task=ner", "+task.module.case_dim=abc"],
     "task.module.case_dim must be a positive integer, got 'abc'."),
    (["task=ner", "+task.module.char_dropout=1.0"],
     "task.module.char_dropout must be in [0, 1), got 1.0."),
    (["task=ner", "+task.module.bigram_dropout=-0.1"],
     "task.module.bigram_dropout must be in [0, 1), got -0.1."),
    (["task=ner", "+task.module.case_dropout=often"], "task.module.case_dropout='often' is not a"),
    (["task=charlm", "task.module.dropout=1.0"], "task.module.dropout must be in [0, 1), got 1.0."),
    (["task=charlm", "task.module.sample_temperatures=[0.5,0]"],
     "task.module.sample_temperatures must all be greater than 0, got [0.5, 0.0]."),
    (["task=g2p", "task.beam_size=0"],
     "task.beam_size must be an integer of at least 1 (1 = greedy search), got 0."),
    (["task=g2p", "task.module.max_decode_len=0"],
     "task.module.max_decode_len must be a positive integer, got 0."),
    (["task=g2p", "task.teacher_forcing={start:1.5}"],
     "task.teacher_forcing must be in [0, 1], got start=1.5, end=1.5."),
    (["task=translate", "task.teacher_forcing={begin:1.0}"],
     "task.teacher_forcing has unknown keys ['begin']; give a number or {start: 1.0, end: 0.5}."),
    (["task=g2p", "task.teacher_forcing=often"], "task.teacher_forcing='often' is not a number"),
    (["task=names", "model=gru", "task.module.sample_count=-1"],
     "task.module.sample_count must be 0 or more, got -1."),
    (["task=names", "model=gru", "task.module.eval_samples=-1"],
     "task.module.eval_samples must be 0 or more, got -1."),
    (["task=names", "model=gru", "task.module.eval_temperature=0"],
     "task.module.sample_temperatures and eval_temperature must be greater than 0, got "
     "[0.5, 1.0] and 0.0."),
    (["task=names", "model=gru", "task.module.classifier_ngrams=[3,1]"],
     "task.module.classifier_ngrams must be [low, high] with 1 <= low <= high, got [3, 1]."),
    (["task.backbone.input_dropout=1.0"], "task.backbone.input_dropout must be in [0, 1), got 1.0."),
    (["experiment=ner_conll", "task.backbone.input_dropout=1.5"],
     "task.backbone.input_dropout must be in [0, 1), got 1.5."),
    (["task=charlm", "model=transformer", "+task.backbone.input_dropout=-0.1"],
     "task.backbone.input_dropout must be in [0, 1), got -0.1."),
])
def test_value_checks_name_the_key(overrides: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        validate(compose_config(overrides, tmp_path))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_embeddings_freeze_must_be_true_or_false() -> None:
    # OmegaConf reads yes/no and on/off as booleans, so a word it cannot read
    with pytest.raises(ConfigError, match=r"^task\.embeddings\.freeze=maybe is not true or false"):
        check_command_line(["task.embeddings.path=a.txt", "task.embeddings.freeze=maybe"])
