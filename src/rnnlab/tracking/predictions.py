"""Per-example test predictions as a run artifact: ``predictions/test.parquet``.

One row per test example (a sentence, a word, a snippet, a text chunk, a window), in the
order a single process scores them, with

* ``example``: the example's index in the prepared test split (the same example has the
  same index in every run on the same data fingerprint, whatever its batch size or
  process count), so two runs can be compared example by example;
* ``input``, ``gold``, ``prediction``: readable text (strings longer than
  :data:`MAX_TEXT` characters are cut, marked with an ellipsis);
* ``score``: the example's own value of the task's metric (correct 0/1, word error 0/1,
  sentence F1, sentence BLEU, nats per character, squared error);
* the per-example *sufficient statistics* from which the corpus metric is recomputed
  exactly (entity ``tp``/``fp``/``fn``, ``edits``/``ref_len``, BLEU n-gram counts, nats and
  characters), so a bootstrap can resample whole sentences.

Beside it, ``predictions/test.csv`` is what the MLflow UI previews as a table (the parquet
it cannot): at most :data:`PREVIEW_ROWS` rows, evenly spaced and in example order, the
text columns cut at :data:`PREVIEW_TEXT` characters, list-valued statistics left out; and
``predictions/test.json`` says how each logged test metric follows from the
columns (``{"test/f1": {"kind": "f1", ...}}``, read by :mod:`rnnlab.report.stats`), how many
examples the test split had and how many rows were kept.

Size bound: at most ``task.module.max_predictions`` rows (default
:data:`DEFAULT_MAX_ROWS`; ``+task.module.max_predictions=0`` writes no file). A larger
test split keeps evenly spaced examples (every k-th in scoring order), and the JSON says
``"sampled": true``; its metrics then estimate, no longer reproduce, the logged ones.

Under DDP every rank collects the rows of its own shard; :meth:`PredictionRows.write`
gathers them (a collective: every rank calls it, in its test epoch-end hook), and rank
zero alone writes and logs the file. Tasks do not call any of this themselves: the test
loop of :class:`rnnlab.tasks.base.RnnlabTask` collects and writes their rows.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rnnlab.core.dist import gather_objects
from rnnlab.core.errors import ConfigError
from rnnlab.data.batching import BucketBatchSampler
from rnnlab.tracking.artifacts import log_file

PARQUET = "predictions/test.parquet"
META = "predictions/test.json"
PREVIEW = "predictions/test.csv"
DEFAULT_MAX_ROWS = 50_000
MAX_TEXT = 1000
PREVIEW_ROWS = 1000  # the UI shows a table of this; the parquet holds every kept row
PREVIEW_TEXT = 200
TEXT_COLUMNS = ("input", "gold", "prediction")


def cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def evenly_spaced(n: int, limit: int) -> list[int]:
    """``limit`` indices spread evenly over ``range(n)`` (all of them when n <= limit)."""
    if n <= limit:
        return list(range(n))
    return [int(i * n / limit) for i in range(limit)]


def batch_size(batch: Mapping[str, Any]) -> int:
    """The number of examples (rows) in a batch."""
    return len(batch["lengths"]) if "lengths" in batch else len(batch["x"])


def _test_loader(trainer: Any) -> Any:
    loaders = getattr(trainer, "test_dataloaders", None)
    if isinstance(loaders, Sequence) and not isinstance(loaders, str | bytes):
        return loaders[0] if loaders else None
    if isinstance(loaders, Mapping):
        return next(iter(loaders.values()), None)
    return loaders


class PredictionRows:
    """A test epoch's per-example rows on this rank, gathered and written at its end.

    Args:
        max_rows: rows kept in the file (0: collect nothing, write nothing).
        whole_batches: the test loader yields whole batches that every rank steps through,
            keeping rows ``rank, rank + world, ...`` (``rnnlab.data.batching.RowShard``:
            character streams, generated problems), rather than a shard of the batches.
    """

    def __init__(self, max_rows: int = DEFAULT_MAX_ROWS, whole_batches: bool = False) -> None:
        if not isinstance(max_rows, int) or max_rows < 0:
            raise ConfigError(f"task.module.max_predictions must be 0 (no predictions file) "
                              f"or a positive number of rows, got {max_rows!r}.")
        self.max_rows = max_rows
        self.whole_batches = whole_batches
        self._rows: list[tuple[tuple[int, int], dict[str, Any]]] = []
        self._batches: tuple[int, list[list[int]]] | None = None

    @property
    def enabled(self) -> bool:
        return self.max_rows > 0

    # ---- collecting (every rank, in test_step) -----------------------------------------
    def example_ids(self, module: Any, batch_idx: int, n: int) -> list[int] | None:
        """Test-split indices of the ``n`` rows of this rank's test batch ``batch_idx``, read
        from the lab's length-bucketed loader (its batches are a fixed function of the split
        and the batch size); None for other loaders."""
        trainer = getattr(module, "_trainer", None)
        sampler = getattr(_test_loader(trainer), "batch_sampler", None) if trainer else None
        if not isinstance(sampler, BucketBatchSampler) or sampler.shuffle:
            return None
        if self._batches is None or self._batches[0] != id(sampler):
            single = BucketBatchSampler(sampler.lengths, sampler.batch_size, shuffle=False,
                                        bucket_factor=sampler.bucket_factor, seed=sampler.seed,
                                        drop_last=sampler.drop_last, num_replicas=1, rank=0)
            self._batches = (id(sampler), list(single))
        where = module.eval_position(batch_idx)
        batches = self._batches[1]
        if where >= len(batches) or len(batches[where]) != n:
            return None
        return list(batches[where])

    def batch_ids(self, module: Any, batch: Mapping[str, Any], batch_idx: int
                  ) -> list[int] | None:
        """Test-split indices of the rows of this rank's test batch ``batch_idx`` (see
        :meth:`example_ids`); None for whole batches, whose rows are numbered in scoring
        order when written."""
        if self.whole_batches:
            return None
        return self.example_ids(module, batch_idx, batch_size(batch))

    def inputs(self, module: Any, batch: Mapping[str, Any], ids: list[int] | None,
               tokens_key: str = "tokens", joiner: str = " ") -> list[str]:
        """Each row's input as text: the raw text when the datamodule keeps it
        (``texts(split)``), else the batch's tokens, else the ids read back through the
        vocabulary, else the sequence's length."""
        n = batch_size(batch)
        dm = getattr(getattr(module, "_trainer", None), "datamodule", None)
        if ids is not None and hasattr(dm, "texts"):
            try:
                texts = dm.texts("test")[0]
                return [cut(str(texts[i])) for i in ids]
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
        if batch.get(tokens_key):
            return [cut(joiner.join(map(str, toks))) for toks in batch[tokens_key]]
        x = batch["x"]
        lengths = batch["lengths"].tolist() if "lengths" in batch else [x.shape[1]] * n
        itos = self.itos(module)
        if itos is not None and not x.is_floating_point():
            return [cut(joiner.join(itos[i] if i < len(itos) else "?" for i in row[:k]))
                    for row, k in zip(x.tolist(), lengths, strict=True)]
        return [f"{k} steps" for k in lengths]

    @staticmethod
    def itos(module: Any) -> list[str] | None:
        """The input vocabulary: the module's own, else the datamodule's."""
        itos = getattr(module, "itos", None)
        if itos:
            return list(itos)
        dm = getattr(getattr(module, "_trainer", None), "datamodule", None)
        for name in ("vocab", "src_vocab"):
            vocab = getattr(dm, name, None)
            if vocab is not None and getattr(vocab, "itos", None):
                return list(vocab.itos)
        return None

    def add(self, module: Any, batch_idx: int, row: int, values: dict[str, Any]) -> None:
        """Row ``row`` of this rank's test batch ``batch_idx``; ``values`` may carry
        ``example`` (else rows are numbered in scoring order when written)."""
        if not self.enabled:
            return
        if self.whole_batches:
            rank, world = module.global_rank, max(1, getattr(module.trainer, "world_size", 1))
            order = (batch_idx, row * world + rank)
        else:
            order = (module.eval_position(batch_idx), row)
        self._rows.append((order, values))

    def add_batch(self, module: Any, batch_idx: int, rows: Sequence[dict[str, Any]],
                  ids: list[int] | None) -> None:
        """The rows of this rank's test batch ``batch_idx``, numbered by ``ids`` if known."""
        for i, row in enumerate(rows):
            if ids is not None:
                row["example"] = ids[i]
            self.add(module, batch_idx, i, row)

    # ---- writing (every rank calls; rank zero writes) ----------------------------------
    def gather(self) -> list[dict[str, Any]]:
        """Every rank's rows in single-process order (a collective), then cleared."""
        mine, self._rows = self._rows, []
        merged = sorted((r for part in gather_objects(mine) for r in part), key=lambda r: r[0])
        rows = [values for _, values in merged]
        for i, row in enumerate(rows):
            row.setdefault("example", i)
        return rows

    def write(self, module: Any, metrics: Mapping[str, Mapping[str, Any]]) -> None:
        """Gather the rows and, on rank zero, log them with ``metrics`` (how each test
        metric follows from the columns, see :mod:`rnnlab.report.stats`)."""
        if not self.enabled:
            return
        rows = self.gather()
        trainer = getattr(module, "_trainer", None)
        if trainer is None or trainer.global_rank != 0 or getattr(trainer, "sanity_checking", False):
            return
        write_rows(trainer, rows, metrics, self.max_rows)


def write_rows(run: Any, rows: list[dict[str, Any]], metrics: Mapping[str, Mapping[str, Any]],
               max_rows: int = DEFAULT_MAX_ROWS) -> Path | None:
    """Bound ``rows`` to ``max_rows`` (evenly spaced), cut long texts, and log the table
    and its JSON description to ``run`` (a trainer or a baseline's trainer-like object)."""
    import pandas as pd  # heavy: only when a table is written

    if not rows or max_rows <= 0 or getattr(run, "global_rank", 0) != 0:
        return None
    kept = [rows[i] for i in evenly_spaced(len(rows), max_rows)]
    table = pd.DataFrame(kept)
    for column in TEXT_COLUMNS:
        if column in table:
            table[column] = table[column].map(lambda v: cut(str(v)))
    first = ["example", *TEXT_COLUMNS, "score"]
    table = table[[c for c in first if c in table] + [c for c in table if c not in first]]
    preview = preview_table(table)
    meta = {"rows": len(kept), "examples": len(rows), "sampled": len(kept) < len(rows),
            "max_rows": max_rows, "metrics": dict(metrics), "columns": list(table.columns),
            "preview_rows": len(preview)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(PARQUET).name
        table.to_parquet(path, index=False)
        preview.to_csv(Path(tmp) / Path(PREVIEW).name, index=False)
        (Path(tmp) / Path(META).name).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        for name in (PARQUET, PREVIEW, META):
            log_file(run, Path(tmp) / Path(name).name, str(Path(name).parent))
    return None


def preview_table(table: Any, max_rows: int = PREVIEW_ROWS) -> Any:
    """The rows a person reads in the UI: at most ``max_rows``, evenly spaced, in example
    order, scalar columns only (a list of n-gram counts is for the statistics), texts cut
    at :data:`PREVIEW_TEXT` characters."""
    if table.empty:
        return table
    picked = table.iloc[evenly_spaced(len(table), max_rows)]
    if "example" in picked:
        picked = picked.sort_values("example", kind="stable")
    scalar = [c for c in picked if picked[c].dtype != object or not picked[c].map(
        lambda v: isinstance(v, list | tuple | dict) or getattr(v, "ndim", 0) > 0).any()]
    picked = picked[scalar].copy()
    for column in TEXT_COLUMNS:
        if column in picked:
            picked[column] = picked[column].map(lambda v: cut(str(v), PREVIEW_TEXT))
    return picked
