"""task=asr: CTC decoding against brute force, learning a tiny alphabet, a WAV manifest end
to end (training, rnnlab-transcribe, the served transcriber), malformed manifests, and the
asr_tiny preset on a stand-in for the spoken-digit corpus."""

from __future__ import annotations

import io
import math
import wave
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import latest_run, write_frames_npz

import rnnlab.data.asr as asr
from rnnlab.build import build_datamodule, build_module
from rnnlab.cli.transcribe import main as transcribe_main
from rnnlab.core.errors import DataError
from rnnlab.data.spec import TranscribeSpec
from rnnlab.inference import load_checkpoint
from rnnlab.inference.transcribe import transcribe_frames, transcribe_wavs
from rnnlab.metrics.ctc import (
    beam_decode,
    brute_force_decode,
    collapse,
    greedy_decode,
    prefix_beam_search,
)
from rnnlab.models import RecurrentEncoder
from rnnlab.run.train import run
from rnnlab.serving.predictors import Transcriber, predictor_for
from rnnlab.serving.publish import MODEL_URI_TAG
from rnnlab.tasks.ctc import CTCTask, subsample_frames

SMALL = ["model=bigru", "model.hidden_size=16", "task.datamodule.batch_size=4",
         "task.module.dropout=0.0", "task.module.subsample=1", "task.decode.beam_size=2",
         "callbacks.early_stopping=null", "trainer.log_every_n_steps=2"]


# ---- decoding ---------------------------------------------------------------------------------
def test_collapse_merges_repeats_then_drops_blanks() -> None:
    assert collapse([0, 1, 1, 0, 1, 2, 2, 0]) == [1, 1, 2]
    assert collapse([0, 0]) == []


@pytest.mark.parametrize("seed", range(12))
def test_greedy_and_beam_search_equal_brute_force(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    steps, classes = 3 + seed % 3, 3 + seed % 2
    log_probs = torch.log_softmax(2 * torch.randn(steps, classes, generator=gen), -1)
    label, score, best_path = brute_force_decode(log_probs)
    # a beam wider than the number of prefixes prunes nothing: exact
    found, found_score = prefix_beam_search(log_probs, beam_size=200)
    assert found == label
    assert math.isclose(found_score, score, rel_tol=1e-6, abs_tol=1e-9)
    assert greedy_decode(log_probs[None], torch.tensor([steps]))[0] == best_path
    # a narrow beam never finds a labelling more probable than the best
    narrow, narrow_score = prefix_beam_search(log_probs, beam_size=2)
    assert narrow_score <= score + 1e-9
    assert beam_decode(log_probs[None], torch.tensor([steps]), 2) == [narrow]


def test_subsampling_averages_real_frames_only() -> None:
    x = torch.arange(10, dtype=torch.float32).view(1, 5, 2).repeat(2, 1, 1)
    out, lengths = subsample_frames(x, torch.tensor([5, 3]), 2)
    assert lengths.tolist() == [3, 2]
    torch.testing.assert_close(out[0, 2], x[0, 4])          # last window: one real frame
    torch.testing.assert_close(out[1, 1], x[1, 2])          # padding is not averaged in


# ---- learning a tiny alphabet -------------------------------------------------------------
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


def test_ctc_loss_falls_and_greedy_decoding_learns_a_tiny_alphabet() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    spec = TranscribeSpec(input_size=6, alphabet=["a", "b", "c"])
    backbone = RecurrentEncoder(cell="gru", hidden_size=24, bidirectional=True, input_size=6)
    task = CTCTask(backbone, spec, optimizer=lambda params: torch.optim.Adam(params, lr=0.02))
    optimizer = task.configure_optimizers()
    collate = asr.AsrDataModule().collate
    train, test = collate(_synthetic(64, rng)), collate(_synthetic(32, rng))
    losses = []
    for _ in range(80):
        loss, _, _ = task._loss(train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    task.eval()
    with torch.no_grad():
        log_probs, lengths = task(test["x"], test["lengths"])
    hyps = greedy_decode(log_probs, lengths)
    refs = task._refs(test)
    edits = sum(asr_edits(h, r) for h, r in zip(hyps, refs, strict=True))
    assert edits / sum(len(r) for r in refs) < 0.1


def asr_edits(hyp: list[int], ref: list[int]) -> int:
    from rnnlab.metrics.ctc import edit_counts

    return edit_counts([hyp], [ref])[0][0]


# ---- a user's WAV files ---------------------------------------------------------------------
RATE = 8000
TONES = {"0": 440.0, "1": 1320.0}


def wav_bytes(text: str, rng: np.random.Generator) -> bytes:
    """A 16-bit mono WAV: one tone per symbol, 0.12 s each with a little noise."""
    parts = []
    for symbol in text:
        t = np.arange(int(0.12 * RATE)) / RATE
        parts.append(0.5 * np.sin(2 * np.pi * TONES[symbol] * t) + rng.normal(0, 0.02, t.size))
    samples = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())
    return buf.getvalue()


def write_manifest(folder: Path, rows: list[tuple[str, str]], name: str = "m.csv",
                   seed: int = 0) -> Path:
    """WAV files for ``(file name, transcript)`` rows and their manifest."""
    rng = np.random.default_rng(seed)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    for file, text in rows:
        symbols = "".join(c for c in text if c in TONES) or "0"
        (folder / "audio" / file).write_bytes(wav_bytes(symbols, rng))
    manifest = folder / name
    manifest.write_text("path,transcript\n" + "".join(f"audio/{f},{t}\n" for f, t in rows))
    return manifest


@pytest.mark.servable_model
def test_wav_manifest_end_to_end(make_config, lab_root: Path, tmp_path: Path, capsys) -> None:
    texts = ["0", "1", "01", "10", "001", "110", "0101", "1", "0", "011", "100", "10"] * 2
    manifest = write_manifest(tmp_path, [(f"u{i}.wav", t) for i, t in enumerate(texts)])
    metrics = run(make_config("task=asr", f"task.data.train={manifest}", "task.alphabet=01",
                              "task.datamodule.split=[0.66,0.17,0.17]",
                              "trainer.max_epochs=2", *SMALL))
    assert {"test/ler", "test/seq_acc", "test/ler_greedy", "val/ler"} <= set(metrics)
    client, latest = latest_run(lab_root, "asr")
    rows = pd.read_parquet(client.download_artifacts(latest.info.run_id,
                                                     "predictions/test.parquet"))
    assert set(rows["gold"]) <= set(texts) and len(rows) == 4
    assert rows["edits"].sum() / rows["ref_len"].sum() == pytest.approx(metrics["test/ler"])
    # the features were cached by fingerprint: a second read does not decode audio again
    assert list((lab_root / "data" / "prepared").glob("asr-audio-*.npz"))

    ckpt = next((lab_root / "outputs").rglob("best.ckpt"))
    wav = tmp_path / "audio" / "u2.wav"
    capsys.readouterr()
    assert transcribe_main([str(ckpt), str(wav), "--beam", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"{wav}\t")
    assert transcribe_main([str(ckpt), "--manifest", str(manifest)]) == 0
    assert "label error rate: " in capsys.readouterr().out.splitlines()[-1]

    loaded = load_checkpoint(ckpt)
    predictor = predictor_for(loaded)
    assert isinstance(predictor, Transcriber)
    example = predictor.example()
    by_frames = predictor(example)
    by_wav = predictor(pd.DataFrame({"wav": [str(wav)]}), {"beam_size": 1})
    assert list(by_frames.columns) == ["transcript"] and len(by_wav) == 1
    assert set("".join(by_wav["transcript"])) <= set("01")
    assert transcribe_frames(loaded, list(example["frames"]), 1) == \
        predictor(example, {"beam_size": 1})["transcript"].tolist()

    # the run's servable MLflow model answers as the checkpoint
    mlflow.set_tracking_uri(f"sqlite:///{lab_root}/mlflow.db")
    try:
        served = mlflow.pyfunc.load_model(latest.data.tags[MODEL_URI_TAG])
        frames = pd.DataFrame({"frames": [np.asarray(f).tolist() for f in example["frames"]]})
        assert served.predict(frames, params={"beam_size": 1})["transcript"].tolist() == \
            predictor(example, {"beam_size": 1})["transcript"].tolist()
        assert served.predict(pd.DataFrame({"wav": [str(wav)]}))["transcript"].tolist() == \
            transcribe_wavs(loaded, [wav])
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.parametrize(("case", "message"), [
    ("missing", r"m\.csv, row 2: the WAV file .*u1\.wav does not exist"),
    ("corrupt", r"m\.csv, row 2: .*u1\.wav cannot be read as audio \(.*\); give a valid WAV"),
    ("empty", r"m\.csv, row 2 \(u1\.wav\): the transcript is empty"),
    ("alphabet", r"m\.csv, row 2 \(u1\.wav\): the transcript '0x1' has symbol 'x' outside "
                 r"task\.alphabet='01'"),
])
def test_malformed_manifest_is_one_sentence_and_no_run(make_config, lab_root: Path,
                                                       tmp_path: Path, case: str,
                                                       message: str) -> None:
    rows = [("u0.wav", "01"), ("u1.wav", "0x1" if case == "alphabet" else
                               "" if case == "empty" else "10"), ("u2.wav", "1")]
    manifest = write_manifest(tmp_path, rows)
    if case == "missing":
        (tmp_path / "audio" / "u1.wav").unlink()
    if case == "corrupt":
        (tmp_path / "audio" / "u1.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.raises(DataError, match=message) as err:
        run(make_config("task=asr", f"task.data.train={manifest}", "task.alphabet=01", *SMALL))
    text = str(err.value)
    assert "\n" not in text and text.endswith(".")
    assert not (lab_root / "mlflow.db").exists() or _no_runs(lab_root)


def _no_runs(root: Path) -> bool:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("asr")
    return exp is None or not client.search_runs([exp.experiment_id])


def test_frames_npz_with_transcripts(tmp_path: Path) -> None:
    path = write_frames_npz(tmp_path / "f.npz", n=30)
    dm = asr.AsrDataModule(data={"train": str(path)}, data_dir=str(tmp_path), batch_size=4)
    dm.prepare_data()
    dm.setup()
    assert sum(len(dm.datasets[s]) for s in ("train", "val", "test")) == 30
    assert dm.spec.alphabet == list("0123456789")
    batch = dm.collate(dm.datasets["train"].items[:3])
    assert batch["y"].min() >= 1 and batch["y_lengths"].tolist() == [1, 1, 1]


# ---- the built-in strings, on a stand-in corpus ----------------------------------------------
def fake_digits(per_digit: int = 12, dim: int = 13, seed: int = 0) -> bytes:
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
def stand_in_digits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> bytes:
    """The pinned spoken-digit wheel replaced by :func:`fake_digits` (no download)."""
    data = fake_digits()
    monkeypatch.setattr(asr, "fetch", lambda dist, cache: tmp_path / "fake.whl")
    monkeypatch.setattr(asr, "read_member", lambda archive, member: data)
    return data


def test_builtin_strings_use_each_recording_in_one_split(stand_in_digits: bytes,
                                                         tmp_path: Path) -> None:
    dm = asr.AsrDataModule(data_dir=str(tmp_path), repeats={"train": 2, "val": 3, "test": 3})
    dm.setup()
    recordings = asr.read_frames_npz(stand_in_digits, "fake")
    train_ids = set(asr.carve_splits(120, {"train"}, (0.8, 0.1, 0.1), 1234,
                                     labels=recordings[1])["train"].tolist())
    assert len(train_ids) == 96
    sizes = {s: sum(len(t) for _, t in dm.datasets[s].items) for s in ("train", "val", "test")}
    assert sizes == {"train": 96 * 2, "val": 12 * 3, "test": 12 * 3}
    lengths = [len(t) for _, t in dm.datasets["train"].items]
    assert min(lengths) >= 1 and max(lengths) <= 7
    # the same settings give the same strings
    again = asr.AsrDataModule(data_dir=str(tmp_path / "again"),
                              repeats={"train": 2, "val": 3, "test": 3})
    again.setup()
    assert again.fingerprint == dm.fingerprint
    assert all(torch.equal(a[1], b[1]) for a, b in zip(dm.datasets["test"].items,
                                                       again.datasets["test"].items,
                                                       strict=True))


def test_asr_tiny_trains_and_beats_an_untrained_model(stand_in_digits: bytes, make_config,
                                                      lab_root: Path) -> None:
    cfg = make_config("experiment=asr_tiny", "model=bigru", "model.hidden_size=32",
                      "task.datamodule.repeats.train=6", "trainer.max_epochs=3",
                      "task.optimizer.lr=0.01", "trainer.limit_test_batches=null")
    metrics = run(cfg)
    dm = build_datamodule(cfg)
    dm.setup()
    torch.manual_seed(0)
    untrained = build_module(cfg, dm.spec).eval()
    batch = dm.collate(dm.datasets["test"].items)
    with torch.no_grad():
        loss, log_probs, lengths = untrained._loss(batch)
    hyps = greedy_decode(log_probs, lengths)
    refs = untrained._refs(batch)
    untrained_ler = sum(asr_edits(h, r) for h, r in zip(hyps, refs, strict=True)) / \
        sum(len(r) for r in refs)
    assert metrics["test/loss"] < 0.5 * loss.item()
    assert metrics["test/ler"] < untrained_ler - 0.2


@pytest.mark.slow
def test_asr_tiny_on_the_real_digits(make_config) -> None:
    """The preset as a user runs it: the pinned corpus, strings built, a short training."""
    metrics = run(make_config("experiment=asr_tiny", "model=bigru"))
    assert 0.0 <= metrics["test/ler"] <= 1.5 and metrics["test/loss"] < 20
