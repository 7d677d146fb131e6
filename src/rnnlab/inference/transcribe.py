"""Audio or frames -> transcripts with a trained CTC checkpoint (``rnnlab-transcribe`` and
the served transcriber).

WAV files become MFCCs with the checkpoint's own settings (sample rate, coefficients) and
frames are normalised with its training mean and deviation, so a transcript is what the
model computed at test time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnlab.build import LoadedModel
from rnnlab.core.errors import ConfigError, DataError, UserError
from rnnlab.data.asr import wav_mfcc
from rnnlab.tasks.transcription import TranscriptionTask


def require_ctc(loaded: LoadedModel, what: str = "rnnlab-transcribe") -> TranscriptionTask:
    """The checkpoint's transcriber (CTC or attention), or one sentence naming the task it
    was trained for."""
    if not isinstance(loaded.module, TranscriptionTask):
        task = loaded.config.get("task", {}).get("name", "?")
        raise UserError(f"the checkpoint was trained for task={task}; {what} needs a "
                        f"transcription checkpoint (task=asr or task=asr_attention).")
    return loaded.module


def _check_beam(beam_size: int | None) -> None:
    if beam_size is not None and beam_size < 1:
        raise ConfigError(f"--beam must be at least 1 (1 = greedy decoding), got {beam_size}.")


def normalise(loaded: LoadedModel, frames: Sequence[Any]) -> list[torch.Tensor]:
    """Each (frames x channels) array standardised as the training frames were, or one
    sentence for an input of the wrong shape."""
    state = loaded.data_state
    mean = np.asarray(state["mean"], dtype=np.float32)
    std = np.asarray(state["std"], dtype=np.float32)
    out = []
    for i, cell in enumerate(frames):
        rows = [np.asarray(r, dtype=np.float32) for r in cell]
        arr = np.stack(rows) if rows else np.zeros((0, len(mean)), np.float32)
        if arr.ndim != 2 or arr.shape[1] != len(mean) or len(arr) == 0:
            raise DataError(f"input {i}: frames must be a non-empty list of frames of "
                            f"{len(mean)} values each (the features the model was trained "
                            f"on), got shape {arr.shape}.")
        out.append(torch.from_numpy((arr - mean) / std).float())
    return out


def transcribe_frames(loaded: LoadedModel, frames: Sequence[Any],
                      beam_size: int | None = None) -> list[str]:
    """Transcripts of raw (unnormalised) frame sequences; ``beam_size`` None: the
    checkpoint's ``task.decode.beam_size``, 1: greedy."""
    module = require_ctc(loaded)
    _check_beam(beam_size)
    return module.transcribe(normalise(loaded, frames), beam_size)


def wav_features(loaded: LoadedModel, paths: Sequence[str | Path]) -> list[np.ndarray]:
    """MFCCs of WAV files with the checkpoint's settings, or one sentence naming the file."""
    state = loaded.data_state
    out = []
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"{path} does not exist; give WAV files.")
        try:
            out.append(wav_mfcc(path, int(state["sample_rate"]), int(state["n_mfcc"])))
        except Exception as err:  # any decoder failure: the file is not usable audio
            reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            raise DataError(f"{path} cannot be read as audio ({reason}); give a valid WAV "
                            f"file.") from None
    return out


def transcribe_wavs(loaded: LoadedModel, paths: Sequence[str | Path],
                    beam_size: int | None = None) -> list[str]:
    """Transcripts of WAV files (MFCCs as in training, then :func:`transcribe_frames`)."""
    require_ctc(loaded)
    _check_beam(beam_size)
    return transcribe_frames(loaded, wav_features(loaded, paths), beam_size)
