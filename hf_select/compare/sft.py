"""One supervised fine-tuning run through TRL's `SFTTrainer` (the `compare` extra), loss on the responses only.

The examples are encoded by hf-select itself (`sft_examples`: the same templates as the scorers, every
assistant turn a completion) and handed to TRL pre-tokenized as `input_ids` + `completion_mask`, with
`completion_only_loss=True`: TRL builds the labels from the mask, so the loss covers exactly the tokens the
scorers call the response. LoRA goes through TRL's `peft_config` and is merged back into a plain model.

Example:
    >>> from datasets import Dataset
    >>> trl_dataset([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}])[0]
    {'input_ids': [5, 6, 7], 'completion_mask': [0, 1, 1]}
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from datasets import Dataset

from ..errors import InputError

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def trl_dataset(examples: list[dict[str, list[int]]]) -> Dataset:
    """`sft_examples`' output as TRL's pre-tokenized completion format (`completion_mask` 1 on response tokens)."""
    return Dataset.from_dict(
        {
            "input_ids": [e["input_ids"] for e in examples],
            "completion_mask": [[int(label != -100) for label in e["labels"]] for e in examples],
        }
    )


def lora_config(settings: Any) -> Any:
    """The `peft.LoraConfig` of `settings` (rank `lora_r` on the attention projections), or None for full SFT."""
    if settings.lora_r <= 0:
        return None
    try:
        from peft import LoraConfig
    except ImportError as err:
        raise InputError("lora_r > 0 needs peft: pip install 'hf-select[compare]'") from err
    alpha = settings.lora_alpha or 4 * settings.lora_r
    return LoraConfig(
        r=settings.lora_r, lora_alpha=alpha, lora_dropout=settings.lora_dropout, target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
    )  # fmt: skip


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            datasets.enable_progress_bars()


def sft_train(model: Any, tokenizer: Any, examples: list[dict[str, list[int]]], settings: Any, seed: int) -> tuple:
    """Fine-tune `model` on `examples` with `trl.SFTTrainer` (bf16 on a CUDA GPU that has it, float32 on CPU;
    AdamW; `warmup` a fraction of the steps; seeded: TRL seeds before the LoRA weights are drawn, `data_seed`
    fixes the order). Returns (the trained model, LoRA merged; the trainer's metrics)."""
    import torch
    from transformers import PrinterCallback

    try:
        from trl import SFTConfig, SFTTrainer
    except ImportError as err:
        raise InputError("compare trains with TRL: pip install 'hf-select[compare]'") from err
    if not examples:
        raise InputError("no training example has a response token within max_length")
    cuda = torch.cuda.is_available()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            output_dir=tmp, completion_only_loss=True, max_length=settings.max_length, packing=False,
            num_train_epochs=settings.epochs, learning_rate=settings.learning_rate,
            lr_scheduler_type=settings.lr_scheduler, warmup_steps=settings.warmup, weight_decay=settings.weight_decay,
            per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=settings.gradient_accumulation,
            seed=seed, data_seed=seed, bf16=cuda and torch.cuda.is_bf16_supported(), use_cpu=not cuda,
            gradient_checkpointing=False, optim="adamw_torch", report_to="none", save_strategy="no",
            logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
        )  # fmt: skip
        with _quiet_datasets():  # TRL's three preparation passes would print a bar each per run
            trainer = SFTTrainer(
                model=model, args=config, train_dataset=trl_dataset(examples), processing_class=tokenizer,
                peft_config=lora_config(settings),
            )  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # the metrics are returned, not printed
        metrics = trainer.train().metrics
    trained = trainer.model
    if hasattr(trained, "merge_and_unload"):
        trained = trained.merge_and_unload()
    return trained, {**metrics, "examples": len(examples)}
