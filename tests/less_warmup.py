"""Build a LESS warm-up folder by hand (no training): a peft LoRA on a model, with random non-zero `lora_B`
(peft starts it at zero, which would make every `lora_A` gradient vanish) and random Adam moments, saved in
the format of `hf_select.less.checkpoints`. Used by the LESS scorer's tests and by `bench_less.py`.
Needs torch, transformers and peft only (no `datasets`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from hf_select.less.checkpoints import WarmupRecord, epoch_folder, save_adam_state, write_checkpoint_info


def build_warmup(
    folder: str | os.PathLike[str],
    model: str,
    *,
    base: torch.nn.Module | None = None,
    epochs: int = 2,
    r: int = 4,
    target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    seed: int = 0,
    learning_rates: Sequence[float] | None = None,
    sample_indices: Sequence[int] = (),
    template: str | None = "chat",
    max_length: int = 256,
) -> Path:
    """Write `folder` (warmup.json + epoch-1..epochs) for `model` (a path recorded in warmup.json; `base`,
    if given, is that model already loaded). Every epoch gets its own random LoRA weights and Adam state."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    lora = {"r": r, "lora_alpha": 4 * r, "lora_dropout": 0.1, "target_modules": list(target_modules)}
    base = base if base is not None else AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **lora))
    rates = list(learning_rates or [2e-5 * (epochs - e) / epochs + 1e-6 for e in range(epochs)])
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        state = {}
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if param.requires_grad:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
                    exp_avg = torch.randn(param.shape, generator=generator) * 1e-3
                    exp_avg_sq = torch.rand(param.shape, generator=generator) * 1e-5
                    state[name] = (exp_avg, exp_avg_sq)
        out = epoch_folder(folder, epoch)
        peft_model.save_pretrained(out)
        save_adam_state(out, state)
        write_checkpoint_info(out, epoch=epoch, learning_rate=rates[epoch - 1], step=10 * epoch)
    record = WarmupRecord(
        model=str(model),
        template=template,
        max_length=max_length,
        lora=lora,
        training={"epochs": epochs, "seed": seed},
        sample_seed=seed,
        sample_indices=list(sample_indices),
    )
    record.save(folder)
    peft_model.unload()  # leave `base` as it was given
    return folder
