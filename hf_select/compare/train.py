"""Fine-tune one base model on each subset, with the same settings and seed, cached by fingerprint.

Training is TRL's `SFTTrainer` (`hf_select.compare.sft`) on examples encoded by the project's
`sft_examples` (the scorers' templates, loss on every assistant turn). A run is identified by the sha256 of
its settings, seed and the subset's content; a finished run's model (and its evaluations, see
`hf_select.compare.runner`) live under `<cache>/runs/<fingerprint>/` and are reused by a re-run.

Example:
    >>> settings = TrainSettings(model="embedded:smollm2", epochs=1)
    >>> settings.describe()["learning_rate"]
    2e-05
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import Dataset

from ..conversation import FormatName
from ..encoding import TemplateName
from ..select.diverse_evol import SFTTrainStep, sft_examples
from .sft import sft_train

SFT_VERSION = 2
"""Bump when the training path changes what a cached run would contain (2: TRL's SFTTrainer)."""


@dataclass(kw_only=True)
class TrainSettings:
    """SFT settings shared by the selection and every control. Defaults are the study's (3 epochs, cosine,
    warmup 0.01, weight decay 0.1, loss on every assistant turn) scaled down for small subsets: a higher
    learning rate (the study's 7e-6 barely moves a model in a few dozen steps) and max length 1,024 (4,096 in
    the study); batch 8 (the study's global batch is 128). The seed is set per run."""

    model: str
    tokenizer: str | None = None
    revision: str | None = None
    template: TemplateName = "auto"
    max_length: int = 1024
    epochs: float = 3.0
    learning_rate: float = 2e-5
    lr_scheduler: str = "cosine"
    warmup: float = 0.01
    weight_decay: float = 0.1
    batch_size: int = 8
    gradient_accumulation: int = 1
    format: FormatName | None = None
    columns: tuple[str, ...] | None = None
    trust_remote_code: bool = False
    lora_r: int = 0
    """LoRA rank on the attention projections (`peft`, the `compare` extra); 0 fine-tunes every weight."""
    lora_alpha: float = 0.0
    """LoRA scale numerator; 0 means 4 x `lora_r` (the study's r=128, alpha=512 ratio)."""
    lora_dropout: float = 0.1

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    def loader(self) -> SFTTrainStep:
        """Loads the base model (float32, on the GPU when there is one) and tokenizer as DiverseEvol does."""
        return SFTTrainStep(
            model=self.model, tokenizer=self.tokenizer, revision=self.revision,
            trust_remote_code=self.trust_remote_code,
        )  # fmt: skip


def dataset_sha256(ds: Dataset) -> str:
    """sha256 of a dataset's rows in order (its Arrow table in IPC stream form): equal content, equal hash."""
    table = ds.flatten_indices().data.table if ds._indices is not None else ds.data.table
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def run_fingerprint(settings: TrainSettings, seed: int, subset_sha256: str) -> str:
    """The cache key of one training run."""
    key = {"settings": settings.describe(), "seed": seed, "subset": subset_sha256, "sft_version": SFT_VERSION}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class TrainedRun:
    """A fine-tuned model in memory (None when it was reused from the cache and not loaded yet)."""

    folder: Path
    model: Any
    tokenizer: Any
    info: dict[str, Any]


def train_run(
    subset: Dataset, settings: TrainSettings, seed: int, folder: Path, *, keep_model: bool = True
) -> TrainedRun:
    """Fine-tune a fresh copy of the base model on `subset`; write `train.json` (and the model under
    `model/` when `keep_model`) into `folder` atomically, so an interrupted run leaves nothing half-written."""
    loader = settings.loader()
    tokenizer = loader.load_tokenizer()
    examples, skipped = sft_examples(
        subset, tokenizer, template=settings.template, max_length=settings.max_length, format=settings.format,
        columns=settings.columns,
    )  # fmt: skip
    start = time.perf_counter()
    model, metrics = sft_train(loader.load_model(), tokenizer, examples, settings, seed)
    seconds = time.perf_counter() - start
    metrics["skipped"] = skipped
    info = {"seed": seed, "rows": len(subset), "seconds": round(seconds, 3), "metrics": metrics}
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if keep_model:
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
    (tmp / "train.json").write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return TrainedRun(folder, model, tokenizer, info)


def cached_run(folder: Path) -> TrainedRun | None:
    """A finished run from the cache, its model not loaded yet; None when there is none."""
    info_path = folder / "train.json"
    if not info_path.is_file():
        return None
    return TrainedRun(folder, None, None, json.loads(info_path.read_text(encoding="utf-8")))


def load_trained(run: TrainedRun) -> TrainedRun:
    """Load a cached run's model and tokenizer (on the GPU when there is one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if run.model is None:
        path = run.folder / "model"
        run.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        run.model.to("cuda" if torch.cuda.is_available() else "cpu")
        run.tokenizer = AutoTokenizer.from_pretrained(path)
    return run
