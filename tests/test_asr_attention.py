"""task=asr_attention: decoder targets, greedy and beam decoding over frames, learning a tiny
alphabet, the asr_attention_tiny preset end to end on a stand-in for the spoken-digit corpus
(scored as task=asr, attention maps, the served transcriber), and refusals in one
sentence."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import latest_run, metric_history

import rnnlab.data.asr as asr
from rnnlab.build import IncompatiblePair, check_pair
from rnnlab.core.errors import ConfigError
from rnnlab.data.spec import TranscribeSpec
from rnnlab.inference import load_checkpoint
from rnnlab.inference.transcribe import transcribe_frames
from rnnlab.metrics.ctc import edit_counts
from rnnlab.models import RecurrentEncoder
from rnnlab.run.train import run
from rnnlab.serving.predictors import Transcriber, predictor_for
from rnnlab.tasks.asr_attention import AsrAttentionTask, decoder_targets
from rnnlab.tasks.transcription import subsample_frames

ALPHABET = ["a", "b", "c"]


def _task(**kwargs) -> AsrAttentionTask:
    spec = TranscribeSpec(input_size=6, alphabet=ALPHABET)
    backbone = RecurrentEncoder(cell="gru", hidden_size=24, bidirectional=True, input_size=6)
    settings = {"dropout": 0.0, "embedding_dim": 8, "attention_size": 16, "max_decode_len": 8,
                **kwargs}
    return AsrAttentionTask(backbone, spec, optimizer=lambda params: torch.optim.Adam(
        params, lr=0.02), **settings)


def _synthetic(n: int, rng: np.random.Generator, dim: int = 6) -> list[tuple[torch.Tensor,
                                                                             torch.Tensor]]:
    """Strings over three symbols, each symbol 2-4 frames near its own centre."""
    centres = np.eye(3, dim) * 3
    items = []
    for _ in range(n):
        labels = rng.integers(1, 4, size=rng.integers(1, 5))
        frames = [centres[s - 1] + rng.normal(0, 0.3, size=(rng.integers(2, 5), dim))
                  for s in labels]
        items.append((torch.tensor(np.concatenate(frames), dtype=torch.float32),
                      torch.tensor(labels, dtype=torch.long)))
    return items


def _ler(hyps: list[list[int]], refs: list[list[int]]) -> float:
    edits, lengths = edit_counts(hyps, refs)
    return sum(edits) / sum(lengths)


def test_decoder_reads_bos_and_the_symbols_and_writes_the_symbols_and_eos() -> None:
    y = torch.tensor([[1, 2, 3], [2, 0, 0]])
    y_in, y_out = decoder_targets(y, torch.tensor([3, 1]), bos_id=4, eos_id=5)
    assert y_in.tolist() == [[4, 1, 2, 3], [4, 2, 0, 0]]
    assert y_out.tolist() == [[1, 2, 3, 5], [2, 5, 0, 0]]


def test_greedy_and_beam_decoding_over_subsampled_frames() -> None:
    torch.manual_seed(0)
    task = _task(subsample=2).eval()
    batch = asr.AsrDataModule().collate(_synthetic(5, np.random.default_rng(1)))
    x, lengths = batch["x"], batch["lengths"]
    greedy = task.decode_frames(x, lengths, beam_size=1)
    beam = task.decode_frames(x, lengths, beam_size=3)
    for hyps in (greedy, beam):
        assert len(hyps) == 5 and all(len(h) <= 8 for h in hyps)
        assert all(0 <= i < len(ALPHABET) + 3 for h in hyps for i in h)
    # a beam of one is exactly greedy search
    assert task.decode_frames(x, lengths, beam_size=1) == \
        task.model.beam_search(*_halved(x, lengths), 1, 8)
    # attention: one row per written symbol, one column per window of two frames
    ids, weights = task.model.greedy(*_halved(x, lengths), 8)
    assert weights is not None and weights.shape[0] == 5
    assert max(len(h) for h in ids) <= weights.shape[1] <= 8
    assert weights.shape[2] == (int(lengths.max()) + 1) // 2
    short = int(lengths.argmin())
    assert weights[short, :, (int(lengths[short]) + 1) // 2:].abs().sum() == 0  # no padding
    assert all(len(t) == len(h) for t, h in zip(task.transcribe(
        [x[i, :n] for i, n in enumerate(lengths.tolist())], beam_size=2), beam, strict=True))


def _halved(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return subsample_frames(x, lengths, 2)


def test_loss_falls_and_greedy_decoding_learns_a_tiny_alphabet() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    task = _task()
    optimizer = task.configure_optimizers()
    collate = asr.AsrDataModule().collate
    train, test = collate(_synthetic(256, rng)), collate(_synthetic(32, rng))
    losses = []
    for _ in range(60):
        loss = task.training_step(train, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    task.eval()
    refs = task._refs(test)
    assert _ler(task.decode_frames(test["x"], test["lengths"], 1), refs) < 0.25
    assert _ler(task.decode_frames(test["x"], test["lengths"], 3), refs) < 0.25


# ---- the preset on a stand-in corpus -------------------------------------------------------
def _fake_digits(per_digit: int = 12, dim: int = 13, seed: int = 0) -> bytes:
    """The digits.npz layout: ``per_digit`` recordings of each digit, each 5-9 frames
    around its digit's own centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, size=(10, dim))
    labels = np.repeat(np.arange(10), per_digit)
    lengths = rng.integers(5, 10, size=labels.size)
    x = np.concatenate([centres[d] + rng.normal(0, 1, size=(k, dim))
                        for d, k in zip(labels, lengths, strict=True)]).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, X=x, y=labels, lengths=lengths)
    return buf.getvalue()


@pytest.fixture
def stand_in_digits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The pinned spoken-digit wheel replaced by :func:`_fake_digits` (no download)."""
    data = _fake_digits()
    monkeypatch.setattr(asr, "fetch", lambda dist, cache: tmp_path / "fake.whl")
    monkeypatch.setattr(asr, "read_member", lambda archive, member: data)


def test_asr_attention_tiny_trains_and_is_scored_as_asr(stand_in_digits: None, make_config,
                                                        lab_root: Path) -> None:
    cfg = make_config("experiment=asr_attention_tiny", "model=bigru", "model.hidden_size=32",
                      "task.datamodule.repeats.train=6", "trainer.max_epochs=3",
                      "task.optimizer.lr=0.01", "trainer.limit_test_batches=null")
    metrics = run(cfg)
    assert {"test/ler", "test/seq_acc", "test/ler_greedy", "test/seq_acc_greedy",
            "test/loss"} <= set(metrics)
    losses = metric_history(lab_root, "asr_attention", "train/loss_epoch")
    lers = metric_history(lab_root, "asr_attention", "val/ler")
    assert len(losses) == 3 and losses[-1] < 0.5 * losses[0]
    assert all(np.isfinite(lers)) and min(lers[1:]) < lers[0]
    assert metrics["test/ler"] < 0.5 and 0 <= metrics["test/seq_acc"] <= 1

    client, latest = latest_run(lab_root, "asr_attention")
    rows = pd.read_parquet(client.download_artifacts(latest.info.run_id,
                                                     "predictions/test.parquet"))
    assert rows["edits"].sum() / rows["ref_len"].sum() == pytest.approx(metrics["test/ler"])
    plots = {a.path for a in client.list_artifacts(latest.info.run_id, "plots")}
    assert {f"plots/attention_test_{i}.png" for i in range(4)} <= plots

    # the checkpoint serves as task=asr's does: frames in, transcript out
    loaded = load_checkpoint(next((lab_root / "outputs").rglob("best.ckpt")))
    predictor = predictor_for(loaded)
    assert isinstance(predictor, Transcriber)
    example = predictor.example()
    assert predictor(example, {"beam_size": 1})["transcript"].tolist() == \
        transcribe_frames(loaded, list(example["frames"]), 1)


# ---- refusals --------------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "error", "message"), [
    (["model=dtw_1nn"], IncompatiblePair,
     r"^model=dtw_1nn is a baseline for sequence_classification tasks, and "
     r"task=asr_attention is a transcription task; choose a neural model"),
    (["task.module.subsample=0"], ConfigError,
     r"^task\.module\.subsample must be a positive integer, got 0\.$"),
    (["task.attention=luong"], ConfigError,
     r"^task\.attention='luong' is unknown; use one of none, bahdanau, luong_dot, "
     r"luong_general \(did you mean task\.attention=luong_dot\?\)\.$"),
    (["task.module.teacher_forcing=1.5"], ConfigError,
     r"^task\.module\.teacher_forcing must be in \[0, 1\], got 1\.5\.$"),
])
def test_impossible_settings_are_one_sentence(make_config, overrides: list[str],
                                              error: type, message: str) -> None:
    with pytest.raises(error, match=message) as err:
        check_pair(make_config("task=asr_attention", *overrides))
    assert "\n" not in str(err.value)
