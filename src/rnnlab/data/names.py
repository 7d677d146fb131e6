"""Person names by language (1->N generation from a category): faker's name lists, or a CSV.

Default corpus: ``faker==40.0.0`` (wheel, MIT) ships first and last names for about 80
locales as Python literals in ``faker/providers/person/<locale>/__init__.py``. Those files
are parsed with :mod:`ast` and only their literal tuples, lists and dicts of strings are
read (``first_names_male = (...)``, ``last_names = OrderedDict((("Smith", 0.01), ...))``):
faker is never installed or imported, so none of its code runs. Attributes computed from
others (``first_names = first_names_male + first_names_female``) add nothing new and are
skipped. The default locales write their names in Latin script, so the alphabet alone
does not give the language away; ``task.data.locales=[...]`` picks others.

A category is a language label (``de_DE`` -> ``German``); a name is deduplicated within
its category. Splits are by *name string*: each distinct name goes to train, val or test
(fixed by ``split_seed``) in every category that lists it, so a test name such as
``Anna`` was never seen in training under any category.

The user's own data is a CSV (or TSV) with the columns ``category,sequence``.

Batches are ``{"x": (B, T) ids, "y": (B, T) ids, "lengths": (B,), "category": (B,)}``
with ``x = <s> + name`` and ``y = name + </s>``: the model predicts every character and
the end of the name.
"""

from __future__ import annotations

import ast
import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import torch

from rnnlab.core.errors import DataError, require
from rnnlab.data.base import ListDataset, RnnlabDataModule
from rnnlab.data.batching import pad_batch
from rnnlab.data.sources import (
    PinnedDistribution,
    fetch,
    file_lock,
    list_members,
    read_member,
    sha256_of,
    write_once,
)
from rnnlab.data.spec import NamesSpec
from rnnlab.data.splits import fingerprint, split_fractions
from rnnlab.data.tables import read_table
from rnnlab.data.translate import split_units
from rnnlab.data.vocab import BOS, EOS, PAD, UNK, Vocabulary

FAKER = PinnedDistribution(
    "faker", "40.0.0", "1020f27d1d4c89274b07b71b48dd0a71ee03aa59ecbee6788f3b285c924fc904")
PERSON_GLOB = "faker/providers/person/*/__init__.py"
SPLITS = ("train", "val", "test")
SPLIT_RULE = "by-name-string-v1"  # part of the fingerprint: a new rule never reuses old splits
_NAME_ATTRIBUTE = re.compile(r"(first|last)_names?")
_LITERAL_CALLS = ("OrderedDict", "dict", "tuple", "list", "set", "frozenset")

# Latin-script locales of faker with a language of their own; the label is the category
LANGUAGES = {
    "az_AZ": "Azerbaijani", "cs_CZ": "Czech", "da_DK": "Danish", "de_DE": "German",
    "en_US": "English", "es_ES": "Spanish", "et_EE": "Estonian", "fi_FI": "Finnish",
    "fr_FR": "French", "ga_IE": "Irish", "hr_HR": "Croatian", "hu_HU": "Hungarian",
    "id_ID": "Indonesian", "is_IS": "Icelandic", "it_IT": "Italian", "lt_LT": "Lithuanian",
    "lv_LV": "Latvian", "nl_NL": "Dutch", "no_NO": "Norwegian", "pl_PL": "Polish",
    "pt_PT": "Portuguese", "ro_RO": "Romanian", "sk_SK": "Slovak", "sl_SI": "Slovenian",
    "sv_SE": "Swedish", "sw": "Swahili", "tr_TR": "Turkish", "uz_UZ": "Uzbek",
    "vi_VN": "Vietnamese", "yo_NG": "Yoruba", "zu_ZA": "Zulu",
}
DEFAULT_LOCALES = ("cs_CZ", "da_DK", "de_DE", "en_US", "es_ES", "fi_FI", "fr_FR", "ga_IE",
                   "hu_HU", "id_ID", "is_IS", "it_IT", "nl_NL", "pl_PL", "pt_PT", "ro_RO",
                   "sv_SE", "tr_TR")


def category_label(locale: str) -> str:
    """``fr_FR`` -> ``French``; a locale without a language label keeps its code."""
    return LANGUAGES.get(locale, locale)


# ---- reading faker's provider files -------------------------------------------------------
def _literal_strings(node: ast.AST) -> list[str] | None:
    """The strings of a literal collection, or None when ``node`` is anything else.

    Accepted: tuples / lists / sets of strings, ``(name, weight)`` pairs, dicts keyed by
    strings, and those wrapped in ``OrderedDict(...)`` / ``tuple(...)`` and the like."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        out = []
        for item in node.elts:
            if isinstance(item, (ast.Tuple, ast.List)) and item.elts:
                item = item.elts[0]  # ("Smith", 0.006): the name and its weight
            if not (isinstance(item, ast.Constant) and isinstance(item.value, str)):
                return None
            out.append(item.value)
        return out
    if isinstance(node, ast.Dict):
        keys = [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        return keys if len(keys) == len(node.keys) else None
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name in _LITERAL_CALLS:
            return _literal_strings(node.args[0])
    return None


def names_from_provider(source: str, label: str) -> list[str]:
    """Every first and last name written as a literal in one provider file, in file order,
    without duplicates; ``label`` names the file in errors."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise DataError(f"{label}, line {err.lineno}: not valid Python, so its names cannot be "
                        f"read; pin the documented faker version.") from err
    names: dict[str, None] = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target, value = stmt.targets[0], stmt.value
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                target, value = stmt.target, stmt.value
            else:
                continue
            if not (isinstance(target, ast.Name) and _NAME_ATTRIBUTE.search(target.id)):
                continue
            for name in _literal_strings(value) or []:
                name = " ".join(name.split())
                if name:
                    names.setdefault(name)
    return list(names)


def faker_locales(archive: Path) -> dict[str, str]:
    """Locale code -> member path of its person provider."""
    return {PurePosixPath(m).parent.name: m for m in list_members(archive, PERSON_GLOB)}


def load_faker_names(archive: Path, locales: Sequence[str]) -> dict[str, list[str]]:
    """Category label -> names for each requested locale (unknown codes are refused)."""
    available = faker_locales(archive)
    unknown = [loc for loc in locales if loc not in available]
    require(not unknown, f"task.data.locales names unknown locale(s) {', '.join(unknown)}; "
                         f"faker {FAKER.version} has {', '.join(sorted(available))}.")
    out: dict[str, list[str]] = {}
    for loc in locales:
        member = available[loc]
        source = read_member(archive, member).decode("utf-8")
        names = names_from_provider(source, f"{archive.name}::{member}")
        if not names:
            raise DataError(f"{archive.name}::{member} lists no literal first or last names; "
                            f"drop {loc} from task.data.locales.")
        out[category_label(loc)] = names
    return out


# ---- the CSV format (user files and prepared splits) --------------------------------------
def read_names_csv(path: str | Path) -> dict[str, list[str]]:
    """Category -> names (deduplicated, file order) from a ``category,sequence`` CSV/TSV."""
    rows = read_table(path, ["category", "sequence"], labels=["category"])
    out: dict[str, dict[str, None]] = {}
    for row in rows:
        name = " ".join(row["sequence"].split())
        out.setdefault(row["category"].strip(), {}).setdefault(name)
    return {cat: list(names) for cat, names in out.items()}


def format_names_csv(pairs: Sequence[tuple[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["category", "sequence"])
    writer.writerows(pairs)
    return buffer.getvalue()


def _read_split(path: Path) -> list[tuple[str, str]]:
    """A prepared split; an empty one is a header alone (its emptiness is reported later)."""
    if path.read_text(encoding="utf-8").count("\n") <= 1:
        return []
    return [(cat, n) for cat, names in read_names_csv(path).items() for n in names]


def split_by_name(by_category: dict[str, list[str]], fractions: Sequence[float],
                  seed: int) -> dict[str, list[tuple[str, str]]]:
    """``(category, name)`` pairs per split; one name string is in one split everywhere."""
    parts = split_units([n for names in by_category.values() for n in names], fractions, seed)
    return {s: [(cat, n) for cat in sorted(by_category) for n in by_category[cat] if n in parts[s]]
            for s in SPLITS}


# ---- the datamodule ----------------------------------------------------------------------
class NamesDataModule(RnnlabDataModule):
    """(category, name) pairs -> ``<s> name`` / ``name </s>`` character ids.

    Args:
        data: ``locales`` = faker locale codes (None: :data:`DEFAULT_LOCALES`); ``path`` =
            the user's ``category,sequence`` CSV instead.
        split: train/val/test fractions of distinct names; ``split_seed`` fixes it.
        max_len: drop names longer than this many characters (a few long outliers would
            set the batch width).
        condition, char_dim, category_dim: the task's conditioning (``task.condition``)
            and embedding sizes. They fix the backbone's input width, which the module
            builds from ``spec.input_size``: a character embedding, plus the category
            embedding when it joins every step.
    """

    CORPORA: ClassVar[dict[str, Any]] = {"": FAKER}

    def __init__(self, data: dict | None = None, data_dir: str = "data",
                 split: Sequence[float] = (0.8, 0.1, 0.1), split_seed: int = 1234,
                 max_len: int = 24, condition: str = "init", char_dim: int = 64,
                 category_dim: int = 32, batch_size: int = 128, num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, seed)
        data = dict(data or {})
        self.path = data.get("path")
        locales = data.get("locales")
        self.locales = list(DEFAULT_LOCALES if locales is None else locales)
        require(self.path or len(self.locales) >= 2,
                f"task.data.locales must name at least two locales to tell apart, got "
                f"{self.locales}.")
        require(len(set(self.locales)) == len(self.locales),
                f"task.data.locales lists a locale twice: {self.locales}.")
        self.data_dir = Path(data_dir)
        self.split = split_fractions(split)
        self.split_seed = split_seed
        self.max_len = max_len  # it, the condition and the sizes: checked by the config schema
        self.condition, self.char_dim, self.category_dim = condition, char_dim, category_dim
        self.pairs: dict[str, list[tuple[str, str]]] = {}
        self.categories: list[str] = []
        self.vocab: Vocabulary | None = None

    # ---- reading -----------------------------------------------------------------------
    def _prepared_dir(self) -> tuple[Path, str]:
        fp = fingerprint("names", FAKER.requirement, FAKER.sha256, PERSON_GLOB, self.locales,
                         self.split, self.split_seed, SPLIT_RULE)
        return self.data_dir / "prepared" / f"names-faker-{fp}", fp

    def prepare_data(self) -> None:
        if self.path:
            return
        out_dir, fp = self._prepared_dir()
        with file_lock(self.data_dir / "prepared" / f"names-{fp}.lock"):
            if all((out_dir / f"{s}.csv").exists() for s in SPLITS):
                return
            archive = fetch(FAKER, self.data_dir / "cache")
            parts = split_by_name(load_faker_names(archive, self.locales), self.split,
                                  self.split_seed)
            for s, pairs in parts.items():
                write_once(out_dir / f"{s}.csv", format_names_csv(pairs).encode("utf-8"))

    def _read(self) -> tuple[dict[str, list[tuple[str, str]]], list[str], str]:
        if self.path:
            by_category = read_names_csv(self.path)
            if len(by_category) < 2:
                raise DataError(f"{self.path} has names of one category only "
                                f"({', '.join(by_category)}); a conditional model needs at "
                                f"least two.")
            parts = split_by_name(by_category, self.split, self.split_seed)
            fp = fingerprint("user-names", sha256_of(Path(self.path)), self.split,
                             self.split_seed, SPLIT_RULE)
            return parts, sorted(by_category), fp
        self.prepare_data()
        out_dir, fp = self._prepared_dir()
        parts = {s: _read_split(out_dir / f"{s}.csv") for s in SPLITS}
        return parts, [category_label(loc) for loc in self.locales], fp

    def _setup(self) -> None:
        parts, categories, fp = self._read()
        where = str(self.path) if self.path else f"faker {FAKER.version}"
        self.pairs = {s: [(c, n) for c, n in pairs if len(n) <= self.max_len]
                      for s, pairs in parts.items()}
        for s in SPLITS:
            if not self.pairs[s]:
                raise DataError(f"{where} leaves no {s} names after the split "
                                f"{list(self.split)} (and max_len={self.max_len}); give more "
                                f"names or change task.datamodule.split.")
        self.categories = sorted(categories)
        cat_ids = {c: i for i, c in enumerate(self.categories)}
        self.vocab = Vocabulary.build([n for _, n in self.pairs["train"]],
                                      specials=(PAD, UNK, BOS, EOS))
        self.fingerprint = fingerprint(fp, self.max_len)
        bos, eos = self.vocab.stoi[BOS], self.vocab.stoi[EOS]
        self.datasets = {}
        for s, pairs in self.pairs.items():
            items = []
            for cat, name in pairs:
                ids = self.vocab.encode(name)
                items.append((torch.tensor([bos, *ids]), torch.tensor([*ids, eos]), cat_ids[cat]))
            self.datasets[s] = ListDataset(items)
        conditioned_steps = self.condition in ("every_step", "both")
        self.spec = NamesSpec(
            input_size=self.char_dim + (self.category_dim if conditioned_steps else 0),
            num_chars=len(self.vocab), padding_idx=self.vocab.pad_id,
            unk_id=self.vocab.unk_id, bos_id=bos, eos_id=eos,
            itos=list(self.vocab.itos), categories=list(self.categories),
            aliases={} if self.path else {loc: category_label(loc) for loc in self.locales},
            max_len=self.max_len, condition=self.condition,
            char_dim=self.char_dim, category_dim=self.category_dim)

    def collate(self, items: list) -> dict[str, Any]:
        x, lengths = pad_batch([i[0] for i in items], self.vocab.pad_id)
        y, _ = pad_batch([i[1] for i in items], self.vocab.pad_id)
        return {"x": x, "y": y, "lengths": lengths,
                "category": torch.tensor([i[2] for i in items], dtype=torch.long)}

    def examples(self, split: str) -> list[tuple[str, str]]:
        """``(category, name)`` pairs of a split (the module's category classifier reads
        the training names and scores itself on the test names)."""
        return list(self.pairs[split])

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"n_{s}": len(p) for s, p in self.pairs.items()}
        out.update(n_categories=len(self.categories), vocab_size=len(self.vocab),
                   categories=",".join(self.categories))
        if not self.path:
            out["locales"] = ",".join(self.locales)
        return out

    def checkpoint_state(self) -> dict[str, Any]:
        return {"vocab": self.vocab.to_dict(), "categories": list(self.categories),
                "locales": None if self.path else list(self.locales), "max_len": self.max_len}
