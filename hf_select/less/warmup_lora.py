"""LESS's warm-up: a LoRA trained on a seeded sample of the pool, one checkpoint per epoch.

`LESSWarmup(model=...).run(pool, output_dir)` (or `hf_select.less.warmup(pool, output_dir, **settings)`,
or `hf-select less-warmup POOL --output DIR`) draws a seeded sample of the pool's positions (5% by
default), encodes it exactly as the scorers do (the `CrossEntropyScorer`'s ids and response-only labels:
same template, turns and max length, `template="study"` included), and trains a `peft` LoRA on it with
transformers' `Trainer` (METHODS.md: r=128, alpha=512, dropout 0.1 on q/k/v/o, 4 epochs, lr 2e-5 linear,
warmup 0.03). Each epoch's checkpoint (`hf_select.less.checkpoints`) holds the LoRA weights, AdamW's
moments keyed by parameter name, and the epoch's mean learning rate (LESS's checkpoint weight);
`warmup.json` names the sample's seed and indices, so that the scorer's targets come from other rows.

A re-run with the same settings and pool resumes after the last complete epoch, to the same weights
and Adam state as an uninterrupted run (`hf_select.less.warmup_trainer`).

Example:
    >>> settings = LESSWarmup(model="embedded:smollm2", lora_r=8, epochs=2, max_length=256)
    >>> settings.sample_size(1000), settings.lora_config()["lora_alpha"]
    (50, 512.0)
    >>> record = settings.run(pool, "smollm2-warmup")  # doctest: +SKIP
    >>> len(record.sample_indices)  # doctest: +SKIP
    50
"""

from __future__ import annotations

import hashlib
import math
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from datasets import Dataset

from ..compare.sft import LORA_TARGETS
from ..conversation import FormatName
from ..encoding import TemplateName
from ..errors import InputError
from .checkpoints import RECORD, WarmupRecord, load_checkpoints

Example = dict[str, np.ndarray]
"""One training row: `input_ids` and `labels` (-100 off the response), int64 arrays of one length."""


@dataclass(kw_only=True)
class LESSWarmup:
    """Train LESS's warm-up LoRA on a seeded sample of the pool and keep every epoch's checkpoint."""

    model: str
    """Base causal LM: a local folder, a Hub model id, or `embedded:smollm2`."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of the model and tokenizer."""
    tokenizer: str | None = None
    """Defaults to the model's own tokenizer."""
    template: TemplateName = "auto"
    """How a conversation becomes text, as in the scorers: `paper`, `chat`, `auto` (chat when there is one)
    or `study` (the study's scoring text)."""
    turns: Literal["last", "all"] = "last"
    """`last`: the loss on the last assistant turn given the history; `all`: every assistant turn."""
    max_length: int = 2048
    """Rows are cut to this many tokens, keeping the start of the response."""
    format: FormatName | None = None
    """The dataset's conversation format; None: detected from its columns."""
    columns: list[str] | None = None
    """The columns that hold the conversation, for `format` (comma-separated on the command line)."""
    trust_remote_code: bool = False
    """Run code that ships with the model or tokenizer (transformers' `trust_remote_code`)."""
    sample: float = 0.05
    """The warm-up sample: a fraction of the pool (below 1) or a number of rows (1 or more)."""
    seed: int = 0
    """Seed of the sample, the LoRA initialisation, the data order and dropout."""
    lora_r: int = 128
    """LoRA rank."""
    lora_alpha: float = 512.0
    """LoRA scale numerator (alpha / r scales the update)."""
    lora_dropout: float = 0.1
    """Dropout on the LoRA input."""
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    """Modules that get LoRA adapters (comma-separated on the command line)."""
    epochs: int = 4
    """Training epochs: one checkpoint each."""
    learning_rate: float = 2e-5
    """Peak learning rate."""
    lr_scheduler: str = "linear"
    """transformers scheduler name."""
    warmup: float = 0.03
    """Learning-rate warm-up, as a fraction of the steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    batch_size: int = 8
    """Rows per forward pass (per device)."""
    gradient_accumulation: int = 4
    """Forward passes per optimizer step (batch x accumulation = 32, the reference's 1 x 32)."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """`auto`: bfloat16 mixed precision on a GPU that has it, float32 otherwise (LoRA weights and Adam
    state stay float32)."""

    def __post_init__(self) -> None:
        if self.columns is not None:
            self.columns = list(self.columns)
        self.lora_targets = list(self.lora_targets)
        checks = [
            (self.sample > 0 and (self.sample < 1 or float(self.sample).is_integer()),
             f"sample must be a fraction in (0, 1) or a whole number of rows, got {self.sample}"),
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.lora_r >= 1, f"lora_r must be at least 1, got {self.lora_r}"),
            (self.max_length >= 2, f"max_length must be at least 2, got {self.max_length}"),
            (self.learning_rate > 0, f"learning_rate must be above 0, got {self.learning_rate}"),
            (0 <= self.warmup < 1, f"warmup is a fraction of the steps in [0, 1), got {self.warmup}"),
            (0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout}"),
            (self.batch_size >= 1 and self.gradient_accumulation >= 1,
             "batch_size and gradient_accumulation must be at least 1"),
            (bool(self.lora_targets), "lora_targets names no module"),
            (self.turns in ("last", "all"), f"turns must be 'last' or 'all', got {self.turns!r}"),
            (self.dtype in ("auto", "float32", "bfloat16"),
             f"dtype must be auto, float32 or bfloat16, got {self.dtype!r}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        if self.template == "study" and self.turns != "last":
            raise InputError(
                "template='study' trains on the last turn only, as the study's scripts did: use turns='last'"
            )

    # --- the sample -------------------------------------------------------------------------------------
    def sample_size(self, n_rows: int) -> int:
        """Rows in the warm-up sample of a pool of `n_rows` (a fraction rounds to the nearest row, at least 1)."""
        size = int(self.sample) if self.sample >= 1 else max(1, round(self.sample * n_rows))
        if size > n_rows:
            raise InputError(f"the warm-up sample asks for {size:,} rows; the pool has {n_rows:,}")
        return size

    def sample_indices(self, n_rows: int) -> list[int]:
        """The seeded sample's pool positions, in pool order."""
        picked = np.random.default_rng(self.seed).choice(n_rows, size=self.sample_size(n_rows), replace=False)
        return sorted(int(i) for i in picked)

    # --- encoding: the scorers' own -----------------------------------------------------------------------
    def scorer(self) -> Any:
        """The `CrossEntropyScorer` whose ids and response span the warm-up trains on (the scorers' encoding)."""
        from ..scorers import CrossEntropyScorer

        return CrossEntropyScorer(
            model=self.model, revision=self.revision, tokenizer=self.tokenizer, template=self.template,
            turns=self.turns, max_length=self.max_length, format=self.format,
            columns=tuple(self.columns) if self.columns else None, trust_remote_code=self.trust_remote_code,
        )  # fmt: skip

    def load_tokenizer(self) -> Any:
        from ..tokenizer import load_tokenizer

        return load_tokenizer(self.tokenizer or self.model, self.revision, self.trust_remote_code)

    def examples(self, rows: Dataset) -> tuple[list[Example], dict[str, int]]:
        """Training examples of `rows` (int64 input ids; labels = the ids on the scored response tokens, -100
        elsewhere: the CE scorer's shifted response loss, which the model computes from them) and the rows
        that could not be encoded, counted by reason."""
        from ..encoding import ConversationEncoder
        from ..scorers.lm import LMResources

        scorer = self.scorer()
        resources = LMResources(ConversationEncoder(self.load_tokenizer(), self.template), engine=None)  # type: ignore[arg-type]
        examples: list[Example] = []
        skipped: dict[str, int] = {}
        for batch in rows.iter(batch_size=1000):
            _, units, errors = scorer.units(batch, resources)
            for reason in filter(None, errors):
                skipped[reason] = skipped.get(reason, 0) + 1
            for ids, spans in units:
                input_ids = np.asarray(ids, dtype=np.int64)
                labels = np.full_like(input_ids, -100)
                for start, end in spans:
                    labels[start:end] = input_ids[start:end]
                examples.append({"input_ids": input_ids, "labels": labels})
        return examples, skipped

    # --- the record -------------------------------------------------------------------------------------
    def lora_config(self) -> dict[str, Any]:
        """The `peft.LoraConfig` fields of the adapter."""
        return {
            "r": self.lora_r, "lora_alpha": float(self.lora_alpha), "lora_dropout": self.lora_dropout,
            "target_modules": list(self.lora_targets), "task_type": "CAUSAL_LM",
        }  # fmt: skip

    def training(self) -> dict[str, Any]:
        """The record's `training`: every setting that is not the model, template, max length or LoRA."""
        own = ("model", "revision", "max_length", "lora_r", "lora_alpha", "lora_dropout", "lora_targets")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in own}

    def record(self, pool: Dataset, examples: list[Example], skipped: dict[str, int]) -> WarmupRecord:
        from ..encoding import resolve_template
        from ..provenance import provenance_of

        digest = hashlib.sha256()
        for example in examples:  # lengths first: the concatenation alone would not tell the rows apart
            digest.update(np.array([len(example["input_ids"])], dtype="<i8").tobytes())
            digest.update(example["input_ids"].astype("<i8").tobytes() + example["labels"].astype("<i8").tobytes())
        training = {
            **self.training(), "precision": precision(self.dtype), "rows": len(examples), "skipped": skipped,
            "examples_sha256": digest.hexdigest(), "pool_rows": len(pool),
        }  # fmt: skip
        return WarmupRecord(
            model=self.model, revision=self.revision, template=resolve_template(self.load_tokenizer(), self.template),
            max_length=self.max_length, lora=self.lora_config(), training=training, sample_seed=self.seed,
            sample_indices=self.sample_indices(len(pool)), source=provenance_of(pool)[0],
        )  # fmt: skip

    # --- running --------------------------------------------------------------------------------------
    def run(
        self, pool: Dataset, output_dir: str | Path, *, overwrite: bool = False, progress: bool = False,
        callbacks: list[Any] | None = None,
    ) -> WarmupRecord:  # fmt: skip
        """Train (or resume) the warm-up of `pool` into `output_dir`; returns its record.

        A folder that already holds a warm-up of the same settings and sample resumes after its last
        complete epoch (nothing is trained when every epoch is there); one with other settings is an error
        unless `overwrite`. `callbacks` are extra `transformers.TrainerCallback`s. The epochs this call
        trained are left in `self.trained_epochs`."""
        from .warmup_trainer import train

        out = Path(output_dir)
        if overwrite and out.exists():
            shutil.rmtree(out)
        indices = self.sample_indices(len(pool))
        examples, skipped = self.examples(pool.select(indices))
        if not examples:
            reasons = "; ".join(f"{n} x {why}" for why, n in skipped.items())
            raise InputError(f"none of the {len(indices)} sampled rows can be trained on ({reasons})")
        record = self.record(pool, examples, skipped)
        self._check_folder(out, record)
        record.save(out)
        self.trained_epochs = train(self, examples, out, progress=progress, callbacks=callbacks or [])
        return record

    def _check_folder(self, out: Path, record: WarmupRecord) -> None:
        """Refuse a folder that holds something else than this warm-up."""
        if not out.exists():
            return
        if not out.is_dir():
            raise InputError(f"{out} exists and is not a folder")
        if not (out / RECORD).is_file():
            if any(out.iterdir()):
                raise InputError(f"{out} is not empty and holds no LESS warm-up ({RECORD}); choose another --output")
            return
        old = asdict(WarmupRecord.load(out))
        new = asdict(record)
        differ = sorted(k for k in new if k not in ("source", "training") and old.get(k) != new[k])
        differ += sorted(f"training.{k}" for k in new["training"] if old["training"].get(k) != new["training"][k])
        if differ:
            raise InputError(
                f"{out} holds a LESS warm-up with other settings or another sample ({', '.join(differ)}): "
                "choose another --output, or --overwrite to start again"
            )

    def steps_per_epoch(self, n_examples: int) -> int:
        """Optimizer steps in one epoch of `n_examples` (on one device)."""
        return math.ceil(math.ceil(n_examples / self.batch_size) / self.gradient_accumulation)

    def describe(self) -> dict[str, Any]:
        return {"class": type(self).__name__, **asdict(self)}


def precision(dtype: str) -> str:
    """The precision `dtype` trains in on this machine: `bfloat16` (mixed, on a GPU) or `float32`."""
    import torch

    gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dtype == "bfloat16" and not gpu_bf16:
        raise InputError("dtype='bfloat16' needs a CUDA GPU with bfloat16; use dtype='auto' or 'float32'")
    return "bfloat16" if dtype == "bfloat16" or (dtype == "auto" and gpu_bf16) else "float32"


def warmup(pool: Dataset, output_dir: str | Path, *, overwrite: bool = False, **settings: Any) -> WarmupRecord:
    """`LESSWarmup(**settings).run(pool, output_dir)`: train (or resume) LESS's warm-up LoRA.

    Example:
        >>> from hf_select import less
        >>> record = less.warmup(pool, "warmup", model="embedded:smollm2", lora_r=8, epochs=2)  # doctest: +SKIP
        >>> [c.epoch for c in less.load_checkpoints("warmup")]  # doctest: +SKIP
        [1, 2]
    """
    return LESSWarmup(**settings).run(pool, output_dir, overwrite=overwrite)


def complete_epochs(output_dir: str | Path) -> list[int]:
    """The epochs whose checkpoint is complete in a warm-up folder (none when the folder does not exist)."""
    return [c.epoch for c in load_checkpoints(output_dir)] if Path(output_dir).is_dir() else []


__all__ = ["LORA_TARGETS", "Example", "LESSWarmup", "complete_epochs", "warmup"]
