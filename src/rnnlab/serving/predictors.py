"""Raw inputs in, predictions out: one predictor per task kind, built from a checkpoint.

Each predictor owns the MLflow signature of its kind (data in DataFrame columns, settings
such as a temperature or a beam width in MLflow ``params`` with their defaults), an input
example made from the checkpoint alone (its vocabulary, classes, channels), and ``predict``,
which reuses the inference code of the CLIs and task modules (``rnnlab-tag``'s tokenising
and tagging, ``rnnlab-convert``'s conversion, the modules' ``generate``/``rollout``), so a
served model answers exactly as the checkpoint does.

| kind | input columns | params | output columns |
|---|---|---|---|
| ``text_classification`` | ``text`` | | ``label``, ``probability``, ``unknown_share`` |
| ``frame_classification`` | ``frames`` (frames x channels) | | ``label``, ``probability`` |
| ``tagging`` | ``text`` | | ``tokens``, ``tags``, ``entities``, ``unknown_share`` |
| ``charlm`` | ``prompt`` | length, temperature, top_k, seed | ``text`` |
| ``names`` | ``category`` | n, temperature, seed, prefix, max_len | ``names`` |
| ``seq2seq`` | ``text`` | beam_size | ``output``, ``tokens`` |
| ``transcription`` | ``frames`` (frames x channels) or ``wav`` (a WAV path) | beam_size | ``transcript`` |
| ``forecast`` | one column per series column, one row per step | horizon | ``step`` and the targets |
| ``regression`` | ``x`` (steps x channels) | | ``prediction`` |
| ``sequence_labelling`` | ``x`` (token ids) | | ``prediction`` (one id per step) |

``unknown_share``: the share of an input's tokens missing from the model's vocabulary. A
model answers text unlike its training text with the same confidence as any other, so a
share above one half is also logged as a warning (:func:`warn_unknown`).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Array, ColSpec, Object, ParamSchema, ParamSpec, Property, Schema

from rnnlab.build import LoadedModel
from rnnlab.core.errors import DataError, UserError
from rnnlab.data.batching import pad_batch
from rnnlab.data.forecast import SeriesTransform
from rnnlab.data.ner import SentenceEncoder
from rnnlab.data.sentiment import TextEncoder
from rnnlab.data.vocab import Vocabulary
from rnnlab.inference.convert import convert
from rnnlab.inference.tagging import split_text, tag_sentences
from rnnlab.inference.transcribe import transcribe_frames, wav_features
from rnnlab.metrics.spans import bio_spans
from rnnlab.tasks.classification import ClassificationTask
from rnnlab.tasks.forecasting import ForecastTask
from rnnlab.tasks.language_model import LanguageModelTask, check_sampling, encode_prompt
from rnnlab.tasks.names import NamesTask
from rnnlab.tasks.regression import RegressionTask
from rnnlab.tasks.seq2seq import Seq2SeqTask
from rnnlab.tasks.sequence_copy import SequenceCopyTask
from rnnlab.tasks.tagging import TaggingTask
from rnnlab.tasks.transcription import TranscriptionTask

BATCH = 64
UNKNOWN_WARNING = 0.5  # above this share of unknown tokens an answer is mostly a guess
log = logging.getLogger(__name__)


def unknown_share(ids: Sequence[int], unk_id: int | None) -> float:
    """The share of ``ids`` that are the vocabulary's ``<unk>`` (0 for no ids)."""
    ids = list(ids)
    if not ids or unk_id is None:
        return 0.0
    return sum(i == unk_id for i in ids) / len(ids)


def warn_unknown(kind: str, shares: Sequence[float]) -> None:
    """One log line when inputs are mostly (> 50%) tokens the model never saw in training."""
    rows = [i for i, share in enumerate(shares) if share > UNKNOWN_WARNING]
    if rows:
        shown = ", ".join(map(str, rows[:10])) + (" ..." if len(rows) > 10 else "")
        log.warning("%d of %d inputs to the %s model are mostly (> %d%%) tokens unknown to "
                    "its vocabulary (rows %s): it was not trained on text like this, so "
                    "those answers are little more than guesses.", len(rows), len(shares),
                    kind, round(UNKNOWN_WARNING * 100), shown)


def column_values(frame: Any, column: str, kind: str) -> list[Any]:
    """The values of ``column`` of a DataFrame (or a dict of lists / list of dicts)."""
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame if not isinstance(frame, dict) else
                             {k: v if isinstance(v, list) else [v] for k, v in frame.items()})
    if column not in frame.columns:
        raise DataError(f"the {kind} model reads a column named {column!r}, and the input has "
                        f"{', '.join(map(str, frame.columns)) or 'no columns'}; rename the "
                        f"column.")
    return list(frame[column])


def read_history(frame: Any, columns: list[str], needed: int, why: str) -> np.ndarray:
    """The history columns of a forecast request as floats, or one sentence saying what
    the request lacks (a column, rows, finite values)."""
    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"the forecast model reads the history columns {', '.join(columns)}; "
                        f"the input lacks {', '.join(missing)}.")
    history = frame[columns].to_numpy(dtype=np.float64)
    if len(history) < needed or not np.isfinite(history).all():
        raise DataError(f"the history must hold at least {needed} rows ({why}) of finite "
                        f"numbers; got {len(history)} rows"
                        f"{'' if np.isfinite(history).all() else ' with missing values'}.")
    return history


def _int_param(params: dict[str, Any], name: str, low: int) -> int:
    value = params[name]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, (int, np.integer)) or value < low:
        raise UserError(f"param {name} must be an integer of at least {low}, got {value!r}.")
    return int(value)


class Predictor:
    """Base class: the kind's schema, example and ``predict``."""

    kind: ClassVar[str] = ""
    inputs: ClassVar[list[ColSpec]] = []
    outputs: ClassVar[list[ColSpec]] = []

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.module = loaded.module
        self.state = loaded.data_state

    def param_defaults(self) -> dict[str, Any]:
        """Settings a request may change, with their defaults (none by default)."""
        return {}

    def example_params(self) -> dict[str, Any]:
        """Params of the input example (cheap values, so logging stays fast)."""
        return {}

    def example(self) -> pd.DataFrame:  # pragma: no cover - every kind defines it
        raise NotImplementedError

    def predict(self, frame: Any, params: dict[str, Any]) -> pd.DataFrame:  # pragma: no cover
        raise NotImplementedError

    def input_schema(self) -> Schema:
        return Schema(list(self.inputs))

    def output_schema(self) -> Schema:
        return Schema(list(self.outputs))

    def signature(self) -> ModelSignature:
        defaults = self.param_defaults()
        params = ParamSchema([ParamSpec(k, _param_type(v), v) for k, v in defaults.items()]) \
            if defaults else None
        return ModelSignature(self.input_schema(), self.output_schema(), params)

    def __call__(self, frame: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """``predict`` with the defaults filled in and no gradients."""
        unknown = sorted(set(params or {}) - set(self.param_defaults()))
        if unknown:
            known = ", ".join(self.param_defaults()) or "none"
            raise UserError(f"the {self.kind} model has no param {', '.join(unknown)}; its "
                            f"params are: {known}.")
        merged = {**self.param_defaults(), **{k: v for k, v in (params or {}).items()
                                              if v is not None}}
        with torch.no_grad():
            return self.predict(frame, merged)


def _param_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    return "double" if isinstance(value, float) else "string"


def _words(vocab: Vocabulary, n: int, joiner: str = " ") -> str:
    """An example input from the most frequent real tokens of a vocabulary."""
    real = [t for t in vocab.itos if not (t.startswith("<") and t.endswith(">"))]
    return joiner.join(real[:n])


# ---- N->1 classification ---------------------------------------------------------------
class _Classifier(Predictor):
    outputs = [ColSpec("string", "label"), ColSpec("double", "probability")]

    def _classify(self, sequences: list[torch.Tensor], pad: float | int) -> pd.DataFrame:
        names = [str(c) for c in self.state["class_names"]]
        labels, probs = [], []
        for i in range(0, len(sequences), BATCH):
            x, lengths = pad_batch(sequences[i: i + BATCH], pad)
            p = torch.softmax(self.module(x, lengths).float(), dim=-1)
            best = p.argmax(-1)
            labels += [names[j] for j in best.tolist()]
            probs += p.gather(1, best[:, None])[:, 0].tolist()
        return pd.DataFrame({"label": labels, "probability": probs})


class TextClassifier(_Classifier):
    """Text -> label, tokenised and truncated exactly as the training texts were, and the
    share of its tokens the vocabulary does not know."""

    kind = "text_classification"
    inputs = [ColSpec("string", "text")]
    outputs = [*_Classifier.outputs, ColSpec("double", "unknown_share")]

    def example(self) -> pd.DataFrame:
        vocab = Vocabulary.from_dict(self.state["vocab"])
        return pd.DataFrame({"text": [_words(vocab, 8), _words(vocab, 3)]})

    def predict(self, frame: Any, params: dict[str, Any]) -> pd.DataFrame:
        encoder = TextEncoder.from_state(self.state)
        ids = [encoder.encode(str(t)) for t in column_values(frame, "text", self.kind)]
        out = self._classify(ids, encoder.vocab.pad_id)
        out["unknown_share"] = [unknown_share(x.tolist(), encoder.vocab.unk_id) for x in ids]
        warn_unknown(self.kind, out["unknown_share"].tolist())
        return out


class FrameClassifier(_Classifier):
    """Frames (one row of channel values per frame) -> label, normalised with the training
    mean and deviation from the checkpoint."""

    kind = "frame_classification"
    inputs = [ColSpec(Array(Array("double")), "frames")]

    def _scaler(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(self.state["mean"], dtype=np.float32),
                np.asarray(self.state["std"], dtype=np.float32))

    def example(self) -> pd.DataFrame:
        mean, std = self._scaler()
        wave = np.sin(np.arange(6))[:, None]
        return pd.DataFrame({"frames": [(mean + wave * std).round(4).tolist()]})

    def predict(self, frame: Any, params: dict[str, Any]) -> pd.DataFrame:
        mean, std = self._scaler()
        sequences = []
        for i, cell in enumerate(column_values(frame, "frames", self.kind)):
            arr = np.stack([np.asarray(r, dtype=np.float32) for r in cell]) if len(cell) else \
                np.zeros((0, len(mean)), np.float32)
            if arr.ndim != 2 or arr.shape[1] != len(mean) or len(arr) == 0:
                raise DataError(f"row {i}: frames must be a non-empty list of frames of "
                                f"{len(mean)} values each (the channels the model was trained "
                                f"on), got shape {arr.shape}.")
            sequences.append(torch.from_numpy((arr - mean) / std).float())
        return self._classify(sequences, 0.0)


# ---- tagging -----------------------------------------------------------------------------
ENTITY = Object([Property("type", "string"), Property("start", "long"),
                 Property("end", "long"), Property("text", "string")])


class Tagger(Predictor):
    """A sentence -> its tokens, IOB2 tags and entity spans (``end`` exclusive), split and
    tagged by ``rnnlab-tag``'s own functions, and the share of its tokens the vocabulary
    does not know."""

    kind = "tagging"
    inputs = [ColSpec("string", "text")]
    outputs = [ColSpec(Array("string"), "tokens"), ColSpec(Array("string"), "tags"),
               ColSpec(Array(ENTITY), "entities"), ColSpec("double", "unknown_share")]
    columns: ClassVar[list[str]] = ["tokens", "tags", "entities", "unknown_share"]

    def example(self) -> pd.DataFrame:
        vocab = Vocabulary.from_dict(self.state["vocab"])
        return pd.DataFrame({"text": [_words(vocab, 6, "" if self.state.get("char_level")
                                             else " ")]})

    def predict(self, frame: Any, params: dict[str, Any]) -> pd.DataFrame:
        char_level = bool(self.state.get("char_level"))
        sentences = [split_text(str(t), char_level) for t in column_values(frame, "text", self.kind)]
        filled = [s for s in sentences if s]
        encoder = SentenceEncoder.from_state(self.state)
        tagged = iter(tag_sentences(self.module, encoder, filled)) if filled else None
        joiner = "" if char_level else " "
        rows = []
        for tokens in sentences:
            tags = next(tagged) if tokens else []
            entities = [{"type": typ, "start": s, "end": e, "text": joiner.join(tokens[s:e])}
                        for typ, s, e in bio_spans(tags)]
            share = unknown_share(encoder.vocab.encode(encoder.norm(tokens)),
                                  encoder.vocab.unk_id)
            rows.append({"tokens": tokens, "tags": tags, "entities": entities,
                         "unknown_share": share})
        warn_unknown(self.kind, [r["unknown_share"] for r in rows])
        return pd.DataFrame(rows, columns=self.columns)


# ---- generation ---------------------------------------------------------------------------
class TextGenerator(Predictor):
    """A prompt -> the prompt and ``length`` sampled characters (``rnnlab-generate``)."""

    kind = "charlm"
    inputs = [ColSpec("string", "prompt")]
    outputs = [ColSpec("string", "text")]

    def param_defaults(self) -> dict[str, Any]:
        return {"length": 500, "temperature": 0.8, "top_k": 0, "seed": 1}

    def example_params(self) -> dict[str, Any]:
        return {"length": 40, "temperature": 0.8, "top_k": 0, "seed": 1}

    def example(self) -> pd.DataFrame:
        prompts = list(self.loaded.config.task.module.get("sample_prompts") or ["\n"])
        return pd.DataFrame({"prompt": [str(prompts[0])]})

    def predict(self, frame: Any, params: dict[str, Any]) -> pd.DataFrame:
        temperature, top_k = float(params["temperature"]), _int_param(params, "top_k", 0)
        check_sampling(temperature, top_k)
        length, seed = _int_param(params, "length", 0), _int_param(params, "seed", 0)
        out = []
        for prompt in column_values(frame, "prompt", self.kind):
            prompt = "" if prompt is None or (isinstance(prompt, float) and math.isnan(prompt)) \
                else str(prompt)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # unseen characters read as <unk>, as the CLI
                ids = encode_prompt(prompt, self.module.itos, self.module.unk_id)
            out.append(prompt + self.module.decode(self.module.generate(ids, length, temperature,
                                                                        top_k, seed)))
        return pd.DataFrame({"text": out})


class NameGenerator(Predictor):
    """A category (or its locale code) -> ``n`` sampled names (``rnnlab-generate --category``)."""

    kind = "names"
    inputs = [ColSpec("string", "category")]
    outputs = [ColSpec(Array("string"), "names")]

    def param_defaults(self) -> dict[str, Any]:
        return {"n": 10, "temperature": 0.8, "seed": 1, "prefix": "", "max_len": 0}

    def example_params(self) -> dict[str, Any]:
        return {**self.param_defaults(), "n": 3}

    def example(self) -> pd.DataFrame:
        return pd.DataFrame({"category": list(self.module.categories[:2])})

    def predict(self, frame: Any, params: dict[str, Any]) -> pd.DataFrame:
        n, seed = _int_param(params, "n", 1), _int_param(params, "seed", 0)
        max_len = _int_param(params, "max_len", 0) or None
        names = [self.module.generate(str(c), n, float(params["temperature"]), seed,
                                      str(params["prefix"]), max_len)
                 for c in column_values(frame, "category", self.kind)]
        return pd.DataFrame({"names": names})


# ---- encoder-decoder ----------------------------------------------------------------------
class Converter(Predictor):
    """A word (g2p) or sentence (translate) -> the output tokens (``rnnlab-convert``)."""

    kind = "seq2seq"
    inputs = [ColSpec("string", "text")]
    outputs = [ColSpec("string", "output"), ColSpec(Array("string"), "tokens")]

    def param_defaults(self) -> dict[str, Any]:
        return {"beam_size": int(self.module.beam_size)}

    def example_params(self) -> dict[str, Any]:
        return {"beam_size": 1}

    def example(self) -> pd.DataFrame:
        vocab = Vocabulary.from_dict(self.state["src_vocab"])
        return pd.DataFrame({"text": [_words(vocab, 5, self.module.joiner)]})

    def predict(self, frame: Any, params: dict[str, Any]) -> pd.DataFrame:
        texts = [str(t) for t in column_values(frame, "text", self.kind)]
        outputs = convert(self.loaded, texts, _int_param(params, "beam_size", 1)) if texts else []
        return pd.DataFrame({"output": [" ".join(o) for o in outputs], "tokens": outputs},
                            columns=["output", "tokens"])


# ---- transcription (CTC) -------------------------------------------------------------------
class Transcriber(Predictor):
    """Frames (one row of channel values per frame) or a WAV file's path -> transcript,
    by ``rnnlab-transcribe``'s own functions: WAV files become MFCCs with the checkpoint's
    settings, frames are normalised with its training statistics. A row gives one of the
    two columns."""

    kind = "transcription"
    inputs = [ColSpec(Array(Array("double")), "frames", required=False),
              ColSpec("string", "wav", required=False)]
    outputs = [ColSpec("string", "transcript")]

    def param_defaults(self) -> dict[str, Any]:
        return {"beam_size": int(self.module.beam_size)}

    def example_params(self) -> dict[str, Any]:
        return {"beam_size": 1}

    def example(self) -> pd.DataFrame:
        mean = np.asarray(self.state["mean"], dtype=np.float32)
        std = np.asarray(self.state["std"], dtype=np.float32)
        wave = np.sin(np.arange(12))[:, None]
        return pd.DataFrame({"frames": [(mean + wave * std).round(4).tolist()]})

    def predict(self, frame: Any, params: dict[str, Any]) -> pd.DataFrame:
        table = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
        if "frames" not in table.columns and "wav" not in table.columns:
            raise DataError(f"the {self.kind} model reads a column frames (frames x channels) "
                            f"or wav (a WAV file's path), and the input has "
                            f"{', '.join(map(str, table.columns)) or 'no columns'}.")
        sequences: list[Any] = []
        for i, row in enumerate(table.to_dict("records")):
            frames, wav = row.get("frames"), row.get("wav")
            has_wav = isinstance(wav, str) and bool(wav)
            has_frames = frames is not None and not (isinstance(frames, float)
                                                     and math.isnan(frames))
            if has_wav == has_frames:
                raise DataError(f"row {i}: give either frames or wav, exactly one of the two.")
            sequences.append(wav_features(self.loaded, [wav])[0] if has_wav else frames)
        beam = _int_param(params, "beam_size", 1)
        texts = transcribe_frames(self.loaded, sequences, beam) if sequences else []
        return pd.DataFrame({"transcript": texts}, columns=["transcript"])


# ---- forecasting ------------------------------------------------------------------------
class Forecaster(Predictor):
    """A history (one row per time step, the training columns) -> the next ``horizon``
    values of the targets, on the original scale, forecast as the test period is."""

    kind = "forecast"

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.state["columns"]]

    @property
    def targets(self) -> list[str]:
        return [self.columns[i] for i in self.state["targets"]]

    def input_schema(self) -> Schema:
        return Schema([ColSpec("double", c) for c in self.columns])

    def output_schema(self) -> Schema:
        return Schema([ColSpec("long", "step"), *(ColSpec("double", c) for c in self.targets)])

    def param_defaults(self) -> dict[str, Any]:
        horizon = self.loaded.config.task.get("horizon") or self.state["steps"]
        return {"horizon": int(horizon)}

    def transform(self) -> SeriesTransform:
        """The training series' fitted transform, from the checkpoint."""
        return SeriesTransform.from_state(self.state["transform"])

    def needed(self) -> int:
        return int(self.state["transform"]["lag"]) + int(self.state["window"])

    def example(self) -> pd.DataFrame:
        steps = np.arange(self.needed())
        season = max(int(self.state.get("season") or 1), 2)
        values = 100.0 + steps + 10.0 * np.sin(2 * np.pi * steps / season)
        return pd.DataFrame({c: values.round(3) for c in self.columns})

    def predict(self, frame: Any, params: dict[str, Any]) -> pd.DataFrame:
        horizon = _int_param(params, "horizon", 1)
        history = read_history(frame, self.columns, self.needed(),
                               "the seasonal lag plus task.window")
        t = self.transform()
        z = t.forward(history)[t.lag:].astype(np.float32)
        forecast = self.module.rollout(torch.from_numpy(z), horizon).float().cpu().numpy()
        values = t.inverse(forecast, history)[:, self.state["targets"]]
        out = pd.DataFrame(values, columns=self.targets)
        out.insert(0, "step", np.arange(1, horizon + 1))
        return out


# ---- generated long-memory problems ----------------------------------------------------------
class SequenceRegressor(Predictor):
    """Steps x channels -> a number (the adding problem: channel 0 values, channel 1 marks)."""

    kind = "regression"
    inputs = [ColSpec(Array(Array("double")), "x")]
    outputs = [ColSpec("double", "prediction")]

    def example(self) -> pd.DataFrame:
        rows = [[round(0.1 * i, 1), 1.0 if i in (1, 6) else 0.0] for i in range(10)]
        return pd.DataFrame({"x": [rows]})

    def predict(self, frame: Any, params: dict[str, Any]) -> pd.DataFrame:
        seqs = [torch.tensor(np.stack([np.asarray(r, np.float32) for r in cell]))
                for cell in column_values(frame, "x", self.kind)]
        out: list[Any] = []
        for i in range(0, len(seqs), BATCH):
            x, lengths = pad_batch(seqs[i: i + BATCH], 0.0)
            out += self.module(x, lengths).float().tolist()
        return pd.DataFrame({"prediction": out})


class SequenceLabeller(Predictor):
    """Token ids -> one predicted id per step (the copy problem: blank 0, symbols 1..K,
    the delimiter K + 1)."""

    kind = "sequence_labelling"
    inputs = [ColSpec(Array("long"), "x")]
    outputs = [ColSpec(Array("long"), "prediction")]

    def example(self) -> pd.DataFrame:
        return pd.DataFrame({"x": [[3, 1, 4, 1, 5, 0, 0, 0, 9, 0, 0, 0, 0, 0]]})

    def predict(self, frame: Any, params: dict[str, Any]) -> pd.DataFrame:
        seqs = [torch.tensor([int(v) for v in cell], dtype=torch.long)
                for cell in column_values(frame, "x", self.kind)]
        out: list[list[int]] = []
        for i in range(0, len(seqs), BATCH):
            x, lengths = pad_batch(seqs[i: i + BATCH], 0)
            best = self.module(x, lengths).argmax(-1)
            out += [row[:n] for row, n in zip(best.tolist(), lengths.tolist(), strict=True)]
        return pd.DataFrame({"prediction": out})


def predictor_for(loaded: LoadedModel) -> Predictor:
    """The predictor of a loaded checkpoint's task, or one sentence saying there is none."""
    module, state = loaded.module, loaded.data_state
    table: Sequence[tuple[type, type[Predictor]]] = (
        (TaggingTask, Tagger), (Seq2SeqTask, Converter), (NamesTask, NameGenerator),
        (LanguageModelTask, TextGenerator), (ForecastTask, Forecaster),
        (RegressionTask, SequenceRegressor), (SequenceCopyTask, SequenceLabeller),
        (TranscriptionTask, Transcriber))
    if isinstance(module, ClassificationTask):
        return TextClassifier(loaded) if "vocab" in state else FrameClassifier(loaded)
    for cls, predictor in table:
        if isinstance(module, cls):
            return predictor(loaded)
    raise UserError(f"task={loaded.config.task.get('name')} ({type(module).__name__}) has no "
                    f"servable form; the lab serves sentiment, ner, charlm, names, g2p, "
                    f"translate, forecast, speech, asr, adding and copy models.")
