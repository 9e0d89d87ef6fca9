"""`hf-select compare --dry-run`: the GPU hours a comparison would take, before spending them.

Training a causal LM costs about 6 x parameters FLOPs per trained token (forward and backward), an
evaluation forward pass 2 x parameters per token; tokens are counted exactly with the base model's
tokenizer (the SFT examples as trained, cut to `max_length`). Hours assume `gpu_tflops` of sustained
throughput (default 400: an H100's ~990 dense bf16 TFLOP/s at ~40% utilisation); runs already in the
cache cost nothing.

Example:
    >>> round(train_flops(params=135e6, tokens=1e6, epochs=3) / 1e15, 3)
    2.43
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from ..select.diverse_evol import sft_examples


def train_flops(*, params: float, tokens: float, epochs: float) -> float:
    return 6.0 * params * tokens * epochs


def meta_model(model: str, revision: str | None = None) -> Any:
    """`model` built from its config alone on the meta device: shapes, no weights read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from .. import embedded

    config = AutoConfig.from_pretrained(embedded.resolve(model, weights=True), revision=revision)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def count_parameters(model: str, revision: str | None = None) -> int:
    """Parameters of `model` from its config alone (built on the meta device: no weights are read)."""
    return int(sum(p.numel() for p in meta_model(model, revision).parameters()))


def sft_tokens(rows: Any, tokenizer: Any, template: str, max_length: int) -> dict[str, int]:
    examples, skipped = sft_examples(rows, tokenizer, template=template, max_length=max_length)
    return {
        "examples": len(examples),
        "tokens": sum(len(e["input_ids"]) for e in examples),
        "response_tokens": sum(sum(1 for x in e["labels"] if x != -100) for e in examples),
        "skipped": sum(skipped.values()),
    }


def estimate_runs(
    settings: Any,
    subsets: Sequence[Any],
    evaluations: Sequence[Any],
    runs: Sequence[dict[str, Any]],
    cache: Path,
    *,
    gpu_tflops: float,
    proxies: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """FLOPs and GPU hours of the runs not yet cached; adds each subset's SFT token counts to `proxies`."""
    from ..tokenizer import load_tokenizer

    tokenizer = load_tokenizer(settings.tokenizer or settings.model, settings.revision)
    params = count_parameters(settings.model, settings.revision)
    per_subset = {}
    for subset in subsets:
        per_subset[subset.name] = counts = sft_tokens(subset.dataset, tokenizer, settings.template, settings.max_length)
        proxies[subset.name]["sft"] = counts
    eval_tokens = 0
    for evaluation in evaluations:
        prompts = evaluation.prompts()
        if prompts is not None:  # texts to generate from: each text plus up to its new tokens
            texts, new_tokens = prompts
            eval_tokens += sum(len(tokenizer(text)["input_ids"]) + new_tokens for text in texts)
        elif isinstance(evaluation.rows, Dataset):
            eval_tokens += sft_tokens(evaluation.rows, tokenizer, settings.template, settings.max_length)["tokens"]
    flops = 0.0
    pending = 0
    for run in runs:
        if (cache / "runs" / run["fingerprint"] / "train.json").is_file():
            continue
        pending += 1
        tokens = per_subset[run["subset"]]["tokens"]
        flops += train_flops(params=params, tokens=tokens, epochs=settings.epochs) + 2.0 * params * eval_tokens
    return {
        "parameters": params,
        "runs": len(runs),
        "runs_to_train": pending,
        "eval_tokens_per_run": eval_tokens,
        "flops": flops,
        "gpu_tflops_assumed": gpu_tflops,
        "gpu_hours": flops / (gpu_tflops * 1e12) / 3600.0,
    }
