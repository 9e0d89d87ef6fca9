"""LESS's cost before it is paid: `hf-select less-warmup --dry-run`, and the FLOPs of LESS scoring.

The warm-up's tokens are counted exactly (its sample encoded as it would train); training costs about
6 x parameters FLOPs per token per epoch (forward 2, backward 4: the LoRA's frozen base still passes
gradients back through every layer), as `hf-select compare --dry-run` counts it. LESS scoring costs, per
row and checkpoint, one forward and one backward pass (6 x parameters per token) plus the random
projection of the LoRA gradient (2 x LoRA parameters x projection dimension). GPU hours assume
`gpu_tflops` of sustained throughput (400: an H100's ~990 dense bf16 TFLOP/s at ~40% utilisation).

Example:
    >>> flops = scoring_flops(params=135e6, tokens=1e6, rows=1000, checkpoints=4, lora_params=4.6e6)
    >>> round(flops / 1e15, 3)
    3.541
    >>> round(gpu_hours(flops, gpu_tflops=400), 5)
    0.00246
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datasets import Dataset

from ..compare.estimate import meta_model, train_flops

if TYPE_CHECKING:
    from .warmup_lora import LESSWarmup

PROJECTION_DIM = 8192
"""METHODS.md's projection dimension."""


def scoring_flops(
    *, params: float, tokens: float, rows: float, checkpoints: int, lora_params: float,
    projection_dim: int = PROJECTION_DIM,
) -> float:  # fmt: skip
    """FLOPs of LESS scoring `rows` rows of `tokens` tokens in all (pool and target rows together) at
    `checkpoints` checkpoints: a forward and a backward pass per row (6 x `params` per token) and the
    gradient's projection (2 x `lora_params` x `projection_dim` per row), at every checkpoint."""
    per_checkpoint = 6.0 * params * tokens + 2.0 * lora_params * projection_dim * rows
    return per_checkpoint * checkpoints


def gpu_hours(flops: float, *, gpu_tflops: float = 400.0) -> float:
    return flops / (gpu_tflops * 1e12) / 3600.0


def model_sizes(model: str, revision: str | None, lora_r: int, targets: list[str]) -> tuple[int, int]:
    """(parameters of `model`, parameters of rank-`lora_r` LoRA adapters on its `targets` linear layers),
    from its config alone."""
    net = meta_model(model, revision)
    params = int(sum(p.numel() for p in net.parameters()))
    lora = 0
    for name, module in net.named_modules():
        if name.rsplit(".", 1)[-1] in targets and hasattr(module, "in_features"):
            lora += lora_r * (module.in_features + module.out_features)
    return params, lora


def warmup_estimate(settings: LESSWarmup, pool: Dataset, *, gpu_tflops: float = 400.0) -> dict[str, Any]:
    """Rows, exact tokens, optimizer steps, FLOPs and GPU hours of `settings`' warm-up on `pool`."""
    indices = settings.sample_indices(len(pool))
    examples, skipped = settings.examples(pool.select(indices))
    tokens = int(sum(len(e["input_ids"]) for e in examples))
    params, lora = model_sizes(settings.model, settings.revision, settings.lora_r, settings.lora_targets)
    flops = train_flops(params=params, tokens=tokens, epochs=settings.epochs)
    return {
        "pool_rows": len(pool),
        "sample_rows": len(indices),
        "trained_rows": len(examples),
        "skipped_rows": sum(skipped.values()),
        "tokens": tokens,
        "response_tokens": int(sum((e["labels"] != -100).sum() for e in examples)),
        "epochs": settings.epochs,
        "steps": settings.steps_per_epoch(len(examples)) * settings.epochs,
        "parameters": params,
        "lora_parameters": lora,
        "flops": flops,
        "gpu_tflops_assumed": gpu_tflops,
        "gpu_hours": gpu_hours(flops, gpu_tflops=gpu_tflops),
    }


def format_warmup_estimate(e: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"LESS warm-up on {e['trained_rows']:,} of {e['pool_rows']:,} rows (sample {e['sample_rows']:,}, "
            f"{e['skipped_rows']:,} cannot be trained on): {e['tokens']:,} tokens "
            f"({e['response_tokens']:,} response tokens) x {e['epochs']} epochs, {e['steps']:,} optimizer steps",
            f"model {e['parameters']:,} parameters, LoRA {e['lora_parameters']:,} trainable",
            f"~{e['flops']:.3g} FLOPs (6 x parameters per token per epoch): {e['gpu_hours']:.3g} GPU hours at "
            f"{e['gpu_tflops_assumed']:g} TFLOP/s sustained",
        ]
    )


__all__ = ["PROJECTION_DIM", "format_warmup_estimate", "gpu_hours", "model_sizes", "scoring_flops", "warmup_estimate"]
