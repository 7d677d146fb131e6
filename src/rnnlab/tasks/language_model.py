"""Character language modelling (1->N generation): next-character cross-entropy and sampling.

The backbone reads characters left to right (the task is causal: a bidirectional model is
refused before any work, the Transformer gets a causal mask) and a linear layer predicts
the next character at every step. The loss is in nats per character; bits per character
(``bpc = loss / ln 2``) and perplexity (``exp(loss)``) are logged beside it, each computed
over every scored character of the split (a sum, not a mean of batch means).

Stateful training (truncated BPTT): with ``stateful=True`` the hidden state after batch
b-1 is detached and fed into batch b, whose streams continue those of b-1 (see
``rnnlab.data.charlm.StreamBatches``); a batch flagged ``reset`` starts from zero. The same
rule scores validation and test, so a stateful model is evaluated with its long context.

Every validation epoch a few samples at two temperatures are logged as text artifacts
(``samples/step_<n>.txt``) so the text can be watched getting better.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.core.errors import ConfigError, UserError
from rnnlab.data.spec import LanguageModelSpec
from rnnlab.metrics.distributed import Ratio
from rnnlab.tasks.base import OptimizerFactory, RnnlabTask
from rnnlab.tracking.artifacts import log_text
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS

# how the test scores follow from predictions/test.parquet (rnnlab.report.stats): summed nats
# and characters of each scored sequence (a row of a test batch)
PREDICTION_METRICS = {"test/loss": {"kind": "ratio", "num": "nats", "den": "chars"},
                      "test/bpc": {"kind": "ratio", "num": "nats", "den": "chars",
                                   "scale": 1 / math.log(2)}}

Hidden = Tensor | tuple[Tensor, Tensor] | None


def detach_hidden(hidden: Hidden) -> Hidden:
    """Cut the graph at the batch boundary (truncated BPTT) but keep the values."""
    if hidden is None:
        return None
    if isinstance(hidden, tuple):
        return tuple(h.detach() for h in hidden)
    return hidden.detach()


def encode_prompt(prompt: str, itos: Sequence[str], unk_id: int | None) -> list[int]:
    """Prompt -> ids; characters never seen in training map to ``<unk>`` with a warning."""
    stoi = {c: i for i, c in enumerate(itos)}
    unknown = sorted({c for c in prompt if c not in stoi})
    if unknown:
        warnings.warn(f"the prompt has characters never seen in training ({''.join(unknown)!r}); "
                      f"they are read as <unk>, which may make the first characters odd.",
                      stacklevel=2)
    fallback = unk_id if unk_id is not None else 0
    return [stoi.get(c, fallback) for c in prompt]


def check_sampling(temperature: float, top_k: int = 0) -> None:
    """Sampling settings every generator shares (charlm text, names)."""
    if not temperature > 0:
        raise UserError(f"temperature must be greater than 0 (got {temperature}); use a small "
                        f"value such as 0.1-0.3 for nearly greedy output or 1.0 for the "
                        f"model's own distribution.")
    if top_k < 0:
        raise UserError(f"top-k must be 0 (off) or a positive number of characters, got {top_k}.")


def per_symbol(loss: Tensor) -> dict[str, Tensor]:
    """Nats per predicted symbol -> ``loss``, ``bpc`` (bits per symbol) and ``ppl`` (its
    exponential, capped at e^50 so an untrained model logs a number)."""
    return {"loss": loss, "bpc": loss / math.log(2), "ppl": torch.exp(loss.clamp(max=50))}


class NextSymbolTask(RnnlabTask):
    """What the character LM and the names generator share: a model of the next symbol
    scored in summed nats over summed predicted symbols (exact over the split, not a mean
    of batch means), logged as loss, bpc and perplexity, and samples that rank 0 logs
    after each validation (``log_samples``)."""

    MEANS = MappingProxyType({"loss": Ratio})
    PROGRESS_BAR = ("loss",)
    itos: list[str]
    unk_id: int | None

    def epoch_values(self, split: str) -> dict[str, Any]:
        return per_symbol(self.mean(split, "loss"))

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if not self.trainer.sanity_checking and self.global_rank == 0:  # rank 0 logs text
            self.log_samples()

    def log_samples(self) -> None:
        """Log generated text as a ``samples/step_<n>.txt`` artifact."""

    def decode(self, ids: Sequence[int]) -> str:
        return "".join("\ufffd" if i == self.unk_id else self.itos[i] for i in ids)


class LanguageModelTask(NextSymbolTask):
    """Backbone -> dropout -> linear over the character vocabulary.

    Args:
        tie_weights: share the input embedding with the output layer (Press & Wolf 2017);
            needs the backbone's output size to equal its embedding size.
        dropout: on the backbone outputs before the output layer.
        stateful: carry (detached) hidden state across consecutive batches.
        sample_length, sample_temperatures, sample_prompts: the samples logged each
            validation epoch (length 0 turns them off); ``sample_seed`` fixes them.
    """

    WHOLE_BATCHES = True  # test batches come whole to every rank, each keeping its rows
    prediction_metrics = PREDICTION_METRICS

    def __init__(self, backbone: nn.Module, spec: LanguageModelSpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/loss", tie_weights: bool = False,
                 dropout: float = 0.0, stateful: bool = False, sample_length: int = 300,
                 sample_temperatures: Sequence[float] = (0.5, 1.0),
                 sample_prompts: Sequence[str] = ("\n",), sample_seed: int = 1,
                 max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__(backbone, optimizer, scheduler, monitor, max_predictions)
        self.vocab_size = int(spec.vocab_size or 0)
        self.itos = list(spec.itos)
        self.unk_id = spec.unk_id
        self.context = int(spec.seq_len)
        self.recurrent = backbone.is_recurrent
        if stateful and not self.recurrent:
            raise ConfigError("task.stateful=true carries a recurrent state across batches, and "
                              "this model has none (a Transformer); use task.stateful=false.")
        self.stateful = bool(stateful)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.output_size, self.vocab_size)
        if tie_weights:
            self._tie(backbone)
        self.sample_length = int(sample_length)
        # dropout and the temperatures are checked by the config schema
        self.sample_temperatures = [float(t) for t in sample_temperatures]
        self.sample_prompts = list(sample_prompts)
        self.sample_seed = sample_seed
        self._train_hidden: Hidden = None
        self._eval_hidden: Hidden = None

    def _tie(self, backbone: nn.Module) -> None:
        embedding = backbone.embedding
        if embedding is None:
            raise ConfigError("task.module.tie_weights=true needs a backbone that embeds token "
                              "ids; this one has no embedding table to share.")
        if embedding.embedding_dim != backbone.output_size:
            raise ConfigError(
                f"task.module.tie_weights=true needs the backbone's output size "
                f"({backbone.output_size}) to equal its embedding size "
                f"({embedding.embedding_dim}); set model.embedding_dim={backbone.output_size} "
                f"or task.module.tie_weights=false.")
        self.head.weight = embedding.weight

    # ---- forward and loss --------------------------------------------------------------
    def forward(self, x: Tensor, hidden: Hidden = None) -> tuple[Tensor, Hidden]:
        """Logits (B, T, V) for the next character at every step, and the final state."""
        enc = self.backbone(x, hidden=hidden)
        return self.head(self.dropout(enc.outputs)), enc.hidden

    def _step(self, batch: dict, hidden: Hidden) -> tuple[Tensor, Tensor, Hidden]:
        """Summed cross-entropy (nats) over the batch's characters, the logits and the
        next state."""
        if batch.get("reset", True) or hidden is None or not self.stateful:
            hidden = None
        elif _batch_of(hidden) != batch["x"].shape[0]:
            hidden = None  # a shorter batch cannot continue the streams
        logits, new_hidden = self(batch["x"], hidden)
        loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), batch["y"].reshape(-1),
                               reduction="sum")
        return loss, logits, detach_hidden(new_hidden) if self.stateful else None

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        total, _, self._train_hidden = self._step(batch, self._train_hidden)
        n = batch["y"].numel()
        loss = total / n
        return self.log_train_loss(loss, n)

    def on_train_epoch_start(self) -> None:
        self._train_hidden = None

    # ---- evaluation: exact per-character averages ---------------------------------------
    def evaluate(self, batch: dict, batch_idx: int, split: str) -> dict[str, Any]:
        total, logits, self._eval_hidden = self._step(batch, self._eval_hidden)
        return {"loss": (total, batch["y"].numel()), "logits": logits.detach()}

    def on_validation_epoch_start(self) -> None:
        self._eval_hidden = None

    def on_test_epoch_start(self) -> None:
        self._eval_hidden = None

    def prediction_rows(self, batch: dict, out: dict[str, Any],
                        ids: list[int] | None) -> list[dict[str, Any]]:
        """One row per scored sequence (a row of the batch): its text, the next
        characters, the model's most likely next characters, and its summed nats."""
        logits, x, y = out["logits"], batch["x"], batch["y"]
        nats = F.cross_entropy(logits.float().reshape(-1, self.vocab_size), y.reshape(-1),
                               reduction="none").view(y.shape).sum(1).tolist()
        best = logits.argmax(-1).tolist()
        show = self.decode if self.itos else lambda ids: " ".join(map(str, ids))
        return [{"input": show(xs), "gold": show(ys), "prediction": show(ps),
                 "score": nats[i] / max(len(ys), 1), "nats": nats[i], "chars": len(ys)}
                for i, (xs, ys, ps) in enumerate(zip(x.tolist(), y.tolist(), best, strict=True))]

    # ---- generation --------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompt_ids: Sequence[int], length: int, temperature: float = 1.0,
                 top_k: int = 0, seed: int | None = None) -> list[int]:
        """``length`` new character ids after the prompt.

        Recurrent backbones read the prompt once and then advance one step per character
        with their state; the Transformer re-reads its last ``seq_len`` characters (its
        training context) each step. Same seed, same output.
        """
        check_sampling(temperature, top_k)
        gen = torch.Generator(device="cpu")
        if seed is not None:
            gen.manual_seed(seed)
        was_training = self.training
        self.eval()
        device = self.head.weight.device
        start = self.itos.index("\n") if "\n" in self.itos else (self.unk_id or 0)
        ids = list(prompt_ids) or [start]  # an empty prompt starts as after a line break
        out: list[int] = []
        hidden: Hidden = None
        x = torch.tensor([ids], device=device)
        banned = torch.zeros(self.vocab_size)  # never emit <pad> or <unk>: they are not text
        banned[[i for i in (0, self.unk_id) if i is not None and i < self.vocab_size]] = -math.inf
        for _ in range(length):
            if not self.recurrent:
                x = torch.tensor([(ids + out)[-self.context:]], device=device)
            logits, hidden = self(x, hidden if self.recurrent else None)
            nxt = sample_next(logits[0, -1].float().cpu() + banned, temperature, top_k, gen)
            out.append(nxt)
            x = torch.tensor([[nxt]], device=device)
        self.train(was_training)
        return out

    def log_samples(self) -> None:
        if self.sample_length <= 0 or not self.itos:
            return
        parts = []
        for t in self.sample_temperatures:
            for k, prompt in enumerate(self.sample_prompts):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ids = encode_prompt(prompt, self.itos, self.unk_id)
                text = self.decode(self.generate(ids, self.sample_length, t,
                                                 seed=self.sample_seed + k))
                parts.append(f"=== temperature {t}, prompt {prompt!r}\n{prompt}{text}\n")
        header = f"step {self.global_step}, epoch {self.current_epoch}\n\n"
        log_text(self.trainer, header + "\n".join(parts),
                 f"samples/step_{self.global_step:07d}.txt")


def sample_next(logits: Tensor, temperature: float, top_k: int, gen: torch.Generator) -> int:
    """One id from softmax(logits / temperature), over the top-k ids when top_k > 0."""
    scaled = (logits - logits.max()) / temperature  # max is 0: no overflow as t -> 0
    if 0 < top_k < scaled.numel():
        kth = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))


def _batch_of(hidden: Hidden) -> int:
    h = hidden[0] if isinstance(hidden, tuple) else hidden
    return int(h.shape[1])
