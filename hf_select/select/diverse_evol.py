"""DiverseEvol (Wu et al. 2023): iterative k-center selection with a model trained on its own picks.

Start from `init` random rows (seeded, drawn like `select.random`); then for each of `rounds` rounds:
1. `model_state = train_step(model_state, pool.select(selected))`: train on the rows selected so far
   (pool order);
2. `X = embed(model_state, pool)`: embed every pool row with that model ([N, d] float32; a row whose
   vector is not finite can neither be picked nor act as a center);
3. add `n_query` unselected rows by k-center from the selected set (`hf_select.select.kcenter`):
   `mode="one-shot"` (the study's reference: the `n_query` rows farthest from the selected set, at once)
   or `"greedy"` (classic k-center: one at a time, distances updated after each pick).
The study's schedule: 10K = 1,000 + 3 x 3,000; 50K = 5,000 + 3 x 15,000; the same model is trained on,
round after round (`model_state` carries over).

Both steps are pluggable callables. The defaults: `SFTTrainStep` (one epoch of causal-LM loss on the
rendered conversations, labels on every assistant turn only, with `transformers.Trainer`; the study's
SFT hyper-parameters) and `MeanHiddenEmbed` (the `EmbeddingScorer` embedding: mean of the last hidden
layer over each row's own tokens, computed with the model in memory).

The record holds the schedule, the init rows, and per round the rows trained on, the picks in pick
order and the seconds spent training, embedding and selecting.

Example:
    >>> train = SFTTrainStep(model="embedded:smollm2", max_length=2048)  # doctest: +SKIP
    >>> embed = MeanHiddenEmbed(tokenizer="embedded:smollm2", max_length=2048)  # doctest: +SKIP
    >>> sel = diverse_evol(pool, init=1000, n_query=3000, rounds=3, train_step=train, embed=embed)  # doctest: +SKIP
    >>> len(sel)  # doctest: +SKIP
    10000
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from time import perf_counter
from typing import Any, Literal

import numpy as np
from datasets import Dataset

from ..conversation import FormatName, RowError, batch_turns, detect_format
from ..encoding import ConversationEncoder, TemplateName, encode_segments, render_segments
from ..errors import BudgetError, InputError
from .base import Picked, Selector, unrecorded
from .budget import Budget
from .selection import TOKEN_COLUMN, Selection

Mode = Literal["one-shot", "greedy"]
TrainStep = Callable[[Any, Dataset], Any]
EmbedStep = Callable[[Any, Dataset], np.ndarray]


# ---------------------------------------------------------------------------------------------------
# Supervised fine-tuning data and loop (shared with examples/ifd_pre_experience.py)
# ---------------------------------------------------------------------------------------------------


def sft_examples(
    rows: Dataset,
    tokenizer: Any,
    *,
    template: TemplateName = "auto",
    max_length: int = 4096,
    format: FormatName | None = None,
    columns: Sequence[str] | None = None,
) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Token ids and labels for causal-LM SFT: the conversation rendered with `template`, labels on every
    assistant turn (as the study trains), -100 elsewhere. With the paper template each response ends with
    the tokenizer's EOS (`Human: q\\nAssistant: a<eos>`); a chat template's responses carry their own
    end-of-turn marker. Cut to `max_length`. Returns (examples, skipped rows by reason)."""
    encoder = ConversationEncoder(tokenizer, template)
    eos = tokenizer.eos_token_id if encoder.template == "paper" else None
    spec = detect_format(rows.column_names, format, tuple(columns) if columns else None)
    examples: list[dict[str, list[int]]] = []
    skipped: dict[str, int] = {}
    for batch in rows.select_columns(list(spec.read_columns)).iter(batch_size=1000):
        segments = []
        for turns in batch_turns(batch, spec):
            try:
                if isinstance(turns, RowError):
                    raise turns
                segments.append(render_segments(encoder, turns, "all"))
            except RowError as err:
                skipped[err.reason] = skipped.get(err.reason, 0) + 1
        for ids, spans in encode_segments(encoder, segments):
            if eos is not None:
                ids, spans = _with_eos(ids, spans, eos)
            labels = [-100] * len(ids)
            for start, end in spans:
                labels[start:end] = ids[start:end]
            ids, labels = ids[:max_length], labels[:max_length]
            if all(label == -100 for label in labels):
                reason = "no response token within max_length"
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            examples.append({"input_ids": ids, "labels": labels})
    return examples, skipped


def _with_eos(ids: list[int], spans: list[tuple[int, int]], eos: int) -> tuple[list[int], list[tuple[int, int]]]:
    out: list[int] = []
    new_spans = []
    previous = 0
    for start, end in spans:
        out += ids[previous:start]
        new_start = len(out)
        out += [*ids[start:end], eos]
        new_spans.append((new_start, len(out)))
        previous = end
    return out + ids[previous:], new_spans


class _Collator:
    """Right-pads a batch: input ids with `pad_id`, labels with -100, and the attention mask."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(examples), width), -100, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for b, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[b, :n] = torch.as_tensor(e["input_ids"])
            labels[b, :n] = torch.as_tensor(e["labels"])
            mask[b, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def train_sft(
    model: Any,
    tokenizer: Any,
    examples: list[dict[str, list[int]]],
    *,
    epochs: float = 1.0,
    learning_rate: float = 7e-6,
    lr_scheduler: str = "cosine",
    warmup: float = 0.01,
    weight_decay: float = 0.1,
    batch_size: int = 8,
    gradient_accumulation: int = 1,
    seed: int = 0,
    output_dir: str | None = None,
) -> dict[str, Any]:
    """Fine-tune `model` in place on `examples` with `transformers.Trainer` (bf16 mixed precision on a
    CUDA GPU that has it, float32 on CPU; AdamW; `warmup` is a fraction of the steps). Nothing is
    saved (save the model yourself). Returns the Trainer's training metrics (`train_loss`, ...)."""
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments

    if not examples:
        return {"train_loss": None, "examples": 0}
    cuda = torch.cuda.is_available()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=output_dir or tmp, num_train_epochs=epochs, learning_rate=learning_rate,
            lr_scheduler_type=lr_scheduler, warmup_steps=warmup, weight_decay=weight_decay,
            per_device_train_batch_size=batch_size, gradient_accumulation_steps=gradient_accumulation,
            seed=seed, data_seed=seed, bf16=cuda and torch.cuda.is_bf16_supported(), use_cpu=not cuda,
            optim="adamw_torch", report_to="none", save_strategy="no", logging_strategy="no",
            disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0,
        )  # fmt: skip
        trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=_Collator(pad_id))
        trainer.remove_callback(PrinterCallback)  # the metrics are returned, not printed
        result = trainer.train()
    return {**result.metrics, "examples": len(examples)}


# ---------------------------------------------------------------------------------------------------
# The default steps
# ---------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class SFTTrainStep:
    """The default DiverseEvol training step: one epoch of SFT (`sft_examples` + `train_sft`) on the rows
    selected so far. On the first call (`model_state` None), or every call with `restart=True`, it loads
    `model` (a folder, Hub id or `embedded:smollm2`) in float32; otherwise it goes on training the model
    it is given. Defaults are the study's SFT hyper-parameters except the epochs (DiverseEvol trains one
    epoch per round) and the batch (set `batch_size` x `gradient_accumulation` x GPUs to 128 for the
    study's global batch)."""

    model: str
    tokenizer: str | None = None
    revision: str | None = None
    template: TemplateName = "auto"
    max_length: int = 4096
    epochs: float = 1.0
    learning_rate: float = 7e-6
    lr_scheduler: str = "cosine"
    warmup: float = 0.01
    weight_decay: float = 0.1
    batch_size: int = 8
    gradient_accumulation: int = 1
    seed: int = 0
    restart: bool = False
    format: FormatName | None = None
    columns: tuple[str, ...] | None = None
    trust_remote_code: bool = False

    def load_model(self) -> Any:
        import torch
        from transformers import AutoModelForCausalLM

        from .. import embedded

        path = embedded.resolve(self.model, weights=True)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                path, revision=self.revision, dtype=torch.float32, trust_remote_code=self.trust_remote_code
            )
        except (OSError, ValueError) as err:
            raise InputError(f"cannot load model {self.model!r}: {err}") from err
        return model.to("cuda" if torch.cuda.is_available() else "cpu")

    def load_tokenizer(self) -> Any:
        from ..tokenizer import load_tokenizer

        return load_tokenizer(self.tokenizer or self.model, self.revision, self.trust_remote_code)

    def __call__(self, model_state: Any, rows: Dataset) -> Any:
        model = self.load_model() if model_state is None or self.restart else model_state
        tokenizer = self.load_tokenizer()
        examples, skipped = sft_examples(
            rows, tokenizer, template=self.template, max_length=self.max_length, format=self.format,
            columns=self.columns,
        )  # fmt: skip
        self.last_metrics = train_sft(
            model, tokenizer, examples, epochs=self.epochs, learning_rate=self.learning_rate,
            lr_scheduler=self.lr_scheduler, warmup=self.warmup, weight_decay=self.weight_decay,
            batch_size=self.batch_size, gradient_accumulation=self.gradient_accumulation, seed=self.seed,
        )  # fmt: skip
        self.last_metrics["skipped"] = skipped
        return model

    def describe(self) -> dict[str, Any]:
        return {"class": "SFTTrainStep", **asdict(self)}


@dataclass(kw_only=True)
class MeanHiddenEmbed:
    """The default DiverseEvol embedding step: `EmbeddingScorer(kind="lm")` with the trained model held
    in memory (`hf_select.scorers.embedding.embed_with_model`): [N, hidden] float32, NaN rows where a row
    cannot be rendered."""

    tokenizer: str
    """The trained model's tokenizer (path, Hub id or `embedded:smollm2`)."""
    template: TemplateName = "auto"
    text: Literal["conversation", "instruction"] = "conversation"
    max_length: int = 4096
    batch_tokens: int | None = None
    normalize: bool = False
    batch_size: int = 1000
    format: FormatName | None = None
    columns: tuple[str, ...] | None = None

    def __call__(self, model: Any, pool: Dataset) -> np.ndarray:
        from ..scorers.embedding import EmbeddingScorer, embed_with_model

        scorer = EmbeddingScorer(
            model=self.tokenizer, template=self.template, text=self.text, max_length=self.max_length,
            batch_tokens=self.batch_tokens, normalize=self.normalize, format=self.format, columns=self.columns,
        )  # fmt: skip
        return embed_with_model(model, pool, scorer, batch_size=self.batch_size)

    def describe(self) -> dict[str, Any]:
        return {"class": "MeanHiddenEmbed", **asdict(self)}


# ---------------------------------------------------------------------------------------------------
# The selector
# ---------------------------------------------------------------------------------------------------


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _describe_step(step: Any) -> Any:
    if hasattr(step, "describe"):
        return step.describe()
    return getattr(step, "__qualname__", type(step).__qualname__)


@dataclass(kw_only=True)
class DiverseEvol(Selector):
    """DiverseEvol: `init` random rows, then `rounds` rounds of (train on the selection, embed the pool,
    add `n_query` rows by k-center): `init + rounds * n_query` rows (see the module doc).

    `train_step(model_state, rows) -> model_state` and `embed(model_state, pool) -> [N, d]` are called
    once per round; `model_state` starts as given (None: the default train step loads its base model).
    k-center runs on `device` (default: CUDA when available). The selection also carries `order` (pool
    indices in selection order: init, then each round's picks) and `model_state` (the last trained one).

    Example:
        >>> import numpy as np
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"x": list(range(20))})
        >>> embed = lambda state, pool: np.arange(len(pool), dtype=np.float32)[:, None] * (state or 1)
        >>> train = lambda state, rows: (state or 0) + 1
        >>> len(DiverseEvol(init=2, n_query=3, rounds=2, train_step=train, embed=embed).fit(ds))
        8
    """

    method = "diverseevol"
    ordered = True
    cli = False  # its steps are Python callables

    init: int
    """Random rows to start from."""
    n_query: int
    """Rows k-center adds per round."""
    rounds: int
    """Rounds of (train, embed, select)."""
    train_step: TrainStep
    """`train_step(model_state, rows) -> model_state` (default step: `SFTTrainStep`)."""
    embed: EmbedStep
    """`embed(model_state, pool) -> [N, d]` (default step: `MeanHiddenEmbed`)."""
    seed: int = 0
    """Seed of the random start rows."""
    mode: Mode = "one-shot"
    """k-center mode: the study's `one-shot` (n farthest at once) or `greedy`."""
    model_state: Any = unrecorded(None)
    """The state the first round trains from (None: the train step's base model)."""
    chunk_size: int | None = unrecorded(None)
    """k-center rows per distance block."""
    device: str | None = unrecorded(None)
    """k-center's torch device (default: CUDA when available)."""

    def __post_init__(self) -> None:
        from .kcenter import MODES

        if self.mode not in MODES:
            raise InputError(f"unknown k-center mode {self.mode!r}: expected one of {list(MODES)}")
        self.init = _count("init", self.init, 0)
        self.n_query, self.rounds = _count("n_query", self.n_query, 0), _count("rounds", self.rounds, 0)

    def requested_budget(self) -> Budget:
        return Budget("count", self.init + self.rounds * self.n_query)

    def pick(self, pool: Dataset, budget: Budget | None, tokens: np.ndarray | None) -> Picked:
        from .kcenter import kcenter_indices

        init, n_query, rounds = self.init, self.n_query, self.rounds
        n = len(pool)
        total = init + rounds * n_query
        if total > n:
            raise BudgetError(
                f"DiverseEvol asks for {init:,} + {rounds} x {n_query:,} = {total:,} rows of a {n:,}-row pool"
            )
        start = np.random.default_rng(self.seed).permutation(n)[:init].astype(np.int64)
        order = [int(i) for i in start]
        state = self.model_state
        history: list[dict[str, Any]] = []
        for r in range(rounds):
            trained_on = np.sort(np.asarray(order, dtype=np.int64))
            t0 = perf_counter()
            state = self.train_step(state, pool.select(trained_on))
            t1 = perf_counter()
            X = np.asarray(self.embed(state, pool), dtype=np.float32)
            t2 = perf_counter()
            if X.ndim != 2 or X.shape[0] != n:
                raise InputError(f"embed returned shape {X.shape}: expected one vector per pool row ({n}, dim)")
            usable = np.flatnonzero(np.isfinite(X).all(axis=1))
            position = np.full(n, -1, dtype=np.int64)
            position[usable] = np.arange(len(usable))
            centers = position[trained_on]
            centers = centers[centers >= 0]
            available = len(usable) - len(centers)
            if n_query > available:
                raise BudgetError(
                    f"round {r + 1}: {n_query:,} rows asked for but only {available:,} unselected rows "
                    "have a finite embedding"
                )
            local = kcenter_indices(
                X if len(usable) == n else X[usable], n_query, selected=centers, mode=self.mode,
                chunk_size=self.chunk_size, device=self.device,
            )  # fmt: skip
            picks = usable[local]
            order += [int(i) for i in picks]
            history.append(
                {
                    "round": r + 1,
                    "trained_on": len(trained_on),
                    "rows_without_embedding": int(n - len(usable)),
                    "picks": picks.tolist(),
                    "train_seconds": round(t1 - t0, 3),
                    "embed_seconds": round(t2 - t1, 3),
                    "select_seconds": round(perf_counter() - t2, 3),
                }
            )
        details = {"init_rows": start.tolist(), "round_details": history}
        return Picked(order, details, extra={"model_state": state})

    def parameters(self, details: dict[str, Any]) -> dict[str, Any]:
        return {
            "init": self.init, "n_query": self.n_query, "rounds": self.rounds, "mode": self.mode,
            "init_rows": details["init_rows"], "train_step": _describe_step(self.train_step),
            "embed": _describe_step(self.embed), "round_details": details["round_details"],
        }  # fmt: skip


def diverse_evol(
    pool: Dataset,
    *,
    init: int,
    n_query: int,
    rounds: int,
    train_step: TrainStep,
    embed: EmbedStep,
    seed: int = 0,
    mode: Mode = "one-shot",
    model_state: Any = None,
    chunk_size: int | None = None,
    device: str | None = None,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Any = None,
) -> Selection:
    """`DiverseEvol(...).fit(pool)`: `init + rounds * n_query` rows by rounds of train, embed, k-center."""
    selector = DiverseEvol(
        init=init, n_query=n_query, rounds=rounds, train_step=train_step, embed=embed, seed=seed, mode=mode,
        model_state=model_state, chunk_size=chunk_size, device=device, token_column=token_column,
    )  # fmt: skip
    return selector.fit(pool, source=source, scorers=scorers)
