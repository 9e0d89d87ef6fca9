"""Fine-tune one base model on each subset, with the same settings and seed, cached by fingerprint.

Training is the project's one SFT path (`hf_select.select.diverse_evol.SFTTrainStep`: `sft_examples` +
`train_sft` on `transformers.Trainer`, loss on every assistant turn). A run is identified by the sha256 of
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
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import Dataset

from ..errors import InputError
from ..select.diverse_evol import SFTTrainStep

SFT_VERSION = 1
"""Bump when the training path changes what a cached run would contain."""


PER_RUN = ("seed", "restart")
"""`SFTTrainStep` fields that `compare` sets per run, not per comparison."""


@dataclass(kw_only=True)
class TrainSettings(SFTTrainStep):
    """SFT settings shared by the selection and every control: `SFTTrainStep`'s fields (the project's one
    SFT path), with defaults that are the study's (3 epochs, cosine, warmup 0.01, weight decay 0.1, loss on
    every assistant turn) scaled down for small subsets: a higher learning rate (the study's 7e-6 barely
    moves a model in a few dozen steps) and max length 1,024 (4,096 in the study); batch 8 (the study's
    global batch is 128). The seed is set per run (`step`)."""

    max_length: int = 1024
    epochs: float = 3.0
    learning_rate: float = 2e-5
    lora_r: int = 0
    """LoRA rank on the attention projections (`peft`, the `lora` extra); 0 fine-tunes every weight."""
    lora_alpha: float = 0.0
    """LoRA scale numerator; 0 means 4 x `lora_r` (the study's r=128, alpha=512 ratio)."""
    lora_dropout: float = 0.1

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in PER_RUN}

    def step(self, seed: int) -> SFTTrainStep:
        """The `SFTTrainStep` that trains with these settings and `seed` (a fresh model each call)."""
        own = {f.name for f in fields(SFTTrainStep)} - set(PER_RUN)
        return SFTTrainStep(**{k: v for k, v in self.describe().items() if k in own}, seed=seed, restart=True)


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def with_lora(model: Any, settings: TrainSettings, seed: int) -> Any:
    """`model` wrapped with seeded LoRA adapters on its attention projections (only they train)."""
    import torch

    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise InputError("lora_r > 0 needs peft: pip install 'hf-select[lora]'") from err
    torch.manual_seed(seed)
    alpha = settings.lora_alpha or 4 * settings.lora_r
    config = LoraConfig(
        r=settings.lora_r, lora_alpha=alpha, lora_dropout=settings.lora_dropout, target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
    )  # fmt: skip
    return get_peft_model(model, config)


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
    step = settings.step(seed)
    start = time.perf_counter()
    if settings.lora_r > 0:
        step.restart = False  # train the adapted model it is given
        model = step(with_lora(step.load_model(), settings, seed), subset).merge_and_unload()
    else:
        model = step(None, subset)
    seconds = time.perf_counter() - start
    tokenizer = step.load_tokenizer()
    info = {"seed": seed, "rows": len(subset), "seconds": round(seconds, 3), "metrics": step.last_metrics}
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
