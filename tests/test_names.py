"""task=names: faker's provider files read as data, splits by name, the two conditioning
paths, the refusals, a training run whose loss falls, and rnnlab-generate --category."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import (
    FAST,
    SHARED_NAME,
    made_up_names,
    metric_history,
    provider_source,
    sized_for,
    slow_except,
)
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from rnnlab.build import check_pair
from rnnlab.cli.generate import main as generate_main
from rnnlab.core.errors import ConfigError, DataError, UserError
from rnnlab.data.names import NamesDataModule, names_from_provider, split_by_name
from rnnlab.models import CELLS, RecurrentEncoder, TransformerEncoder
from rnnlab.models.conditioned import ConditionedGenerator
from rnnlab.run.train import run

TINY = FAST["names"]


# ---- reading -----------------------------------------------------------------------------
def test_provider_reader_takes_literal_name_lists_only() -> None:
    names = names_from_provider(provider_source("fr_FR"), "fr.py")
    first, last = made_up_names("fr_FR", 60, 1), made_up_names("fr_FR", 60, 2)
    assert set(names) == {*first, *last, SHARED_NAME}  # weighted pairs give their names
    assert len(names) == len(set(names))  # derived first_names added nothing twice
    assert not {"Dr.", "Mr.", "{{first_name}} {{last_name}}"} & set(names)
    assert names_from_provider("class P:\n    last_names = tuple(sorted(x))\n", "p.py") == []
    with pytest.raises(DataError, match=r"bad\.py, line 2: not valid Python"):
        names_from_provider("class P:\n    first_names = (\n", "bad.py")


def test_fixture_wheel_is_split_by_name(fake_faker: Path, lab_root: Path) -> None:
    dm = NamesDataModule({"locales": ["fr_FR", "de_DE", "it_IT"]}, str(lab_root / "data"),
                         split=(0.6, 0.2, 0.2), batch_size=8)
    dm.prepare_data()
    dm.setup()
    assert dm.categories == ["French", "German", "Italian"]
    assert dm.spec.aliases == {"fr_FR": "French", "de_DE": "German", "it_IT": "Italian"}
    splits = {s: {n for _, n in dm.examples(s)} for s in ("train", "val", "test")}
    assert all(splits.values())
    assert not splits["train"] & splits["val"] and not splits["train"] & splits["test"]
    assert not splits["val"] & splits["test"]
    shared = [(s, c) for s in splits for c, n in dm.examples(s) if n == SHARED_NAME]
    assert len(shared) == 3 and len({s for s, _ in shared}) == 1  # one split, all locales
    assert "佐藤" not in "".join(dm.vocab.itos)  # the decoy locale was never read
    batch = next(iter(dm.train_dataloader()))
    assert torch.equal(batch["x"][:, 1:][batch["y"][:, :-1] != 0],
                       batch["y"][:, :-1][batch["y"][:, :-1] != 0])  # y is x shifted
    assert (batch["x"][:, 0] == dm.spec.bos_id).all()
    ends = batch["y"].gather(1, (batch["lengths"] - 1).unsqueeze(1)).squeeze(1)
    assert (ends == dm.spec.eos_id).all()
    assert dm.spec.input_size == 64  # init: the characters alone reach the backbone
    again = NamesDataModule({"locales": ["fr_FR", "de_DE", "it_IT"]}, str(lab_root / "data"),
                            split=(0.6, 0.2, 0.2), condition="every_step")
    again.setup()
    assert again.fingerprint == dm.fingerprint and again.spec.input_size == 64 + 32
    with pytest.raises(ConfigError, match=r"task\.data\.locales names unknown locale\(s\) "
                                          r"xx_XX; faker 40\.0\.0 has de_DE, fr_FR, it_IT, ja_JP"):
        NamesDataModule({"locales": ["fr_FR", "xx_XX"]}, str(lab_root / "data")).setup()


def test_split_keeps_a_name_in_one_split_whatever_its_category() -> None:
    by_category = {"A": [f"n{i}" for i in range(50)], "B": [f"n{i}" for i in range(25, 75)]}
    parts = split_by_name(by_category, (0.8, 0.1, 0.1), seed=3)
    where = {}
    for s, pairs in parts.items():
        for _, n in pairs:
            assert where.setdefault(n, s) == s
    assert sum(len(p) for p in parts.values()) == 100
    assert parts == split_by_name(by_category, (0.8, 0.1, 0.1), seed=3)


def test_user_csv_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "names.csv"
    rows = [f"{c},{n}" for c in ("fr_FR", "it_IT") for n in made_up_names(c, 40, 1)]
    good.write_text("category,sequence\n" + "\n".join(rows) + "\n", encoding="utf-8")
    dm = NamesDataModule({"path": str(good)}, str(tmp_path))
    dm.setup()
    assert dm.categories == ["fr_FR", "it_IT"] and dm.spec.aliases == {}
    cases = [("category,name\nA,x\n", r"bad\.csv, line 1: missing column\(s\) sequence"),
             ("category,sequence\nA,x\nB,,\n", r"bad\.csv, line 3: expected 2 fields"),
             ("category,sequence\nA,x\nB, \n", r"bad\.csv, line 3: the 'sequence' field is empty"),
             ("category,sequence\nA,x\nA,y\n", r"bad\.csv has names of one category only \(A\)")]
    for text, message in cases:
        bad = tmp_path / "bad.csv"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(DataError, match=message):
            NamesDataModule({"path": str(bad)}, str(tmp_path)).setup()
    # an unknown task.condition: test_schema.py


# ---- the two conditioning paths ----------------------------------------------------------
def _generator(condition: str, cell: str = "gru", transformer: bool = False,
               char_dim: int = 8, category_dim: int = 4) -> ConditionedGenerator:
    torch.manual_seed(0)
    width = char_dim + (category_dim if condition in ("every_step", "both") else 0)
    if transformer:
        backbone = TransformerEncoder(d_model=16, nhead=2, num_layers=1, dim_feedforward=32,
                                      dropout=0.0, causal=True, input_size=width)
    else:
        backbone = RecurrentEncoder(cell, hidden_size=16, input_size=width, causal=True)
    return ConditionedGenerator(backbone, num_chars=12, num_categories=3, condition=condition,
                                char_dim=char_dim, category_dim=category_dim).eval()


NAME = torch.tensor([[2, 5, 6, 7, 8, 9, 10]])  # <s> and six characters


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn", "transformer"])
@pytest.mark.parametrize("condition", ["init", "every_step", "both"])
def test_the_category_moves_the_first_step_and_later_ones(condition: str, cell: str) -> None:
    model = _generator(condition, cell, transformer=cell == "transformer")
    with torch.no_grad():
        a, b = (model(NAME, torch.tensor([c])) for c in (0, 1))
    gaps = (a.softmax(-1) - b.softmax(-1)).abs().sum(-1)[0]
    assert (gaps > 1e-4).all(), gaps  # step 0 (the first character) and every later one


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_every_step_reads_the_category_at_each_step_and_init_only_at_the_start(cell: str) -> None:
    """From the same state after t characters of category 0, one more step read with
    category 1 differs under every_step at every t; under init it is the same step."""
    for condition, moves in (("every_step", True), ("both", True), ("init", False)):
        model = _generator(condition, cell)
        cat0, cat1 = torch.tensor([0]), torch.tensor([1])
        with torch.no_grad():
            state = model.initial_state(cat0)
            for t in range(NAME.shape[1]):
                step = NAME[:, t: t + 1]
                same = model.backbone(model.inputs(step, cat0, first=t == 0), hidden=state)
                swapped = model.backbone(model.inputs(step, cat1, first=t == 0), hidden=state)
                gap = (model.head(same.outputs) - model.head(swapped.outputs)).abs().max()
                assert (gap > 1e-5) == moves, (condition, t, float(gap))
                state = same.hidden


def test_none_ignores_the_category_and_has_no_category_weights() -> None:
    model = _generator("none")
    with torch.no_grad():
        assert torch.equal(model(NAME, torch.tensor([0])), model(NAME, torch.tensor([2])))
    assert model.category_embedding is None and model.bridge_h is None
    init = _generator("init", "lstm")
    assert init.bridge_c is not None and isinstance(init.initial_state(torch.tensor([1])), tuple)


def test_sampling_is_seeded_and_stops_at_the_end_symbol() -> None:
    model = _generator("both", "lstm")
    cats = torch.tensor([0, 1, 2, 0])
    draw = [model.sample(cats, 8, 1.0, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert draw[0] == draw[1] and draw[0] != draw[2]
    assert all(len(row) <= 8 and not {0, 1, 2, 3} & set(row) for row in draw[0])
    prefixed = model.sample(cats, 8, 1.0, torch.Generator().manual_seed(1), prefix=[5, 6])
    assert all(row[:2] == [5, 6] for row in prefixed)


def test_mismatched_backbones_are_refused() -> None:
    wide = RecurrentEncoder("gru", hidden_size=8, input_size=12, causal=True)
    with pytest.raises(ConfigError, match=r"reads inputs of width 12, but task\.condition=init "
                                          r"with task\.char_dim=8 and task\.category_dim=4 feeds 8"):
        ConditionedGenerator(wide, 12, 3, "init", 8, 4)
    both_ways = RecurrentEncoder("gru", hidden_size=8, input_size=8, bidirectional=True)
    with pytest.raises(ConfigError, match="a bidirectional model cannot be used"):
        ConditionedGenerator(both_ways, 12, 3, "init", 8, 4)


def test_category_is_refused_for_a_charlm_checkpoint(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    import rnnlab.cli.generate

    charlm = SimpleNamespace(module=object(), config=OmegaConf.create({"task": {"name": "charlm"}}))
    monkeypatch.setattr(rnnlab.cli.generate, "load_checkpoint", lambda *a, **k: charlm)
    assert generate_main(["lm.ckpt", "--category", "French"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --category is for task=names checkpoints, and lm.ckpt holds a task=charlm "
        "model; give it a --prompt instead.")


def test_bidirectional_model_is_refused_before_any_work(make_config) -> None:
    cfg = make_config("model=bigru", "task=names", "task.data.path=/nonexistent.csv")
    with pytest.raises(ConfigError, match=r"task=names is causal .* bidirectional model=bigru"):
        check_pair(cfg)


# ---- end to end --------------------------------------------------------------------------
def _plain(value: object) -> bool:
    """Only what a weights_only=True checkpoint load accepts without custom classes."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


@pytest.mark.parametrize(("model", "condition"), [("gru", "every_step"), ("lstm", "init"),
                                                  ("transformer", "both"), ("rnn", "none")])
def test_training_reduces_loss(model: str, condition: str, make_config, fake_faker: Path,
                               lab_root: Path) -> None:
    metrics = run(make_config("experiment=names_tiny", f"model={model}",
                              f"task.condition={condition}", *sized_for(model, TINY)))
    history = metric_history(lab_root, "names", "train/loss_epoch")
    assert len(history) == 2 and history[-1] < history[0]
    assert metrics["test/category_chance"] == pytest.approx(1 / 3)
    # a model that learned nothing guesses each symbol uniformly: perplexity the number of
    # symbols (35 here; measured 36-47 with lr 0, 12-21 after these 2 short epochs)
    num_chars = torch.load(metrics["ckpt_path"], weights_only=False)["rnnlab"]["spec"]["num_chars"]
    assert metrics["test/ppl"] < 0.75 * num_chars, metrics
    assert metrics["test/category_acc_real"] > 0.6  # the made-up languages are easy to tell
    assert metrics["test/bpc"] == pytest.approx(metrics["test/loss"] / 0.6931471805599453)
    assert ("test/category_gain" in metrics) == (condition != "none")


# slow: every cell trains sentiment in the default suite
@pytest.mark.parametrize("cell", slow_except([c for c in CELLS if c not in ("gru", "lstm", "rnn")]))
def test_every_other_registered_cell_learns_names(cell: str, make_config, fake_faker: Path,
                                                  lab_root: Path) -> None:
    """The headline grid runs every cell on names; the cells the test above leaves out train
    here, the category entering through the initial state (the encoder-decoder's bridge)."""
    run(make_config("experiment=names_tiny", f"model={cell}", "task.condition=init", *TINY))
    history = metric_history(lab_root, "names", "train/loss_epoch")
    assert len(history) == 2 and history[-1] < history[0]


def test_run_samples_checkpoint_and_generate_cli(make_config, fake_faker: Path, lab_root: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    metrics = run(make_config("experiment=names_tiny", "model=gru", "task.condition=both",
                              *TINY))
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    r = client.search_runs([client.get_experiment_by_name("names").experiment_id])[0]
    samples = [a.path for a in client.list_artifacts(r.info.run_id, "samples")]
    texts = [p for p in samples if p.endswith(".txt")]
    assert len(texts) == 2  # one per validation
    assert "samples/category_confusion.png" in samples
    text = Path(client.download_artifacts(r.info.run_id, texts[0], str(lab_root))).read_text()
    assert "=== temperature 0.5" in text and "=== temperature 1.0" in text
    assert all(f"\n{c}: " in text for c in ("French", "German", "Italian"))
    ckpt = metrics["ckpt_path"]
    meta = torch.load(ckpt, map_location="cpu", weights_only=False)["rnnlab"]
    assert _plain(meta["spec"]) and _plain(meta["data_state"])
    capsys.readouterr()
    args = [ckpt, "--category", "French", "--n", "6", "--temperature", "0.8", "--seed", "3"]
    assert generate_main(args) == 0
    first = capsys.readouterr().out
    assert generate_main(args) == 0
    assert capsys.readouterr().out == first and len(first.splitlines()) == 6
    assert generate_main([ckpt, "--category", "fr_FR", "--n", "3", "--prompt", "Ma"]) == 0
    assert all(n.startswith("Ma") for n in capsys.readouterr().out.splitlines())
    assert generate_main([ckpt, "--category", "Klingon"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: unknown category 'Klingon'; this model knows French, "
                           "German, Italian.")
    assert generate_main([ckpt]) == 2
    assert "pass --category, one of French, German, Italian" in capsys.readouterr().err
    assert generate_main([ckpt, "--category", "German", "--temperature", "0"]) == 2
    assert "error: temperature must be greater than 0" in capsys.readouterr().err
    with pytest.raises(UserError, match="has characters never seen in training"):
        from rnnlab.inference import load_checkpoint

        load_checkpoint(ckpt).module.generate("German", prefix="§")


def test_presets_compose(make_config) -> None:
    for experiment in ("names_tiny", "names"):
        cfg = make_config(f"experiment={experiment}", "model=lstm", "task.condition=every_step")
        assert cfg.task.name == "names" and cfg.task.causal and cfg.task.monitor == "val/loss"
        assert cfg.task.datamodule.condition == cfg.task.module.condition == "every_step"
        assert cfg.task.datamodule.char_dim == cfg.task.module.char_dim
    assert make_config("task=names", "model=gru", "model.embedding_dim=24").task.char_dim == 24
    recipe = make_config("experiment=names", "model=transformer")
    assert recipe.task.char_dim == 64 and "hidden_size" not in recipe.model
    check_pair(recipe)  # the recipe sets no model key a Transformer would not take
