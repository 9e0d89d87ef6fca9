"""The on-disk format of a LESS warm-up: one folder per epoch, plus the warm-up's record.

A warm-up folder::

    WARMUP/
      warmup.json              # WarmupRecord: base model, template, LoRA settings, the sample (seed, indices)
      epoch-1/                 # one per epoch, in order
        adapter_config.json    # peft `save_pretrained` of the LoRA adapter
        adapter_model.safetensors
        adam.safetensors       # Adam state by parameter name: "<name>.exp_avg", "<name>.exp_avg_sq"
        checkpoint.json        # {"epoch": 1, "learning_rate": <mean lr over the epoch>, "step": <global step>}
      epoch-2/ ...

Parameter names are those of the `PeftModel`'s `named_parameters()` (e.g.
`base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight`): Trainer's own `optimizer.pt`
keys its state by integer position, which a reader cannot match to parameters safely.
The checkpoint weight `w_i` of LESS is the epoch's mean learning rate, normalised over checkpoints.

Example:
    >>> import tempfile, torch
    >>> from hf_select.less.checkpoints import (
    ...     checkpoint_weights, load_checkpoints, save_adam_state, write_checkpoint_info)
    >>> root = tempfile.mkdtemp()
    >>> for epoch, lr in [(1, 2e-5), (2, 1e-5)]:
    ...     folder = f"{root}/epoch-{epoch}"
    ...     _ = save_adam_state(folder, {"w": (torch.zeros(2), torch.ones(2))})
    ...     _ = write_checkpoint_info(folder, epoch=epoch, learning_rate=lr, step=epoch * 10)
    >>> ckpts = load_checkpoints(root)
    >>> [c.epoch for c in ckpts], [round(w, 4) for w in checkpoint_weights(ckpts)]
    ([1, 2], [0.6667, 0.3333])
    >>> ckpts[0].adam_state()["w"][1].tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError

RECORD = "warmup.json"
ADAM = "adam.safetensors"
INFO = "checkpoint.json"
_EPOCH_DIR = re.compile(r"^epoch-(\d+)$")


def epoch_folder(warmup_dir: str | os.PathLike[str], epoch: int) -> Path:
    """The folder of `epoch`'s checkpoint (1-based)."""
    return Path(warmup_dir) / f"epoch-{epoch}"


@dataclass(frozen=True)
class WarmupCheckpoint:
    """One epoch's checkpoint: its folder (a peft adapter folder), epoch and mean learning rate."""

    path: Path
    epoch: int
    learning_rate: float
    step: int

    def adam_state(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{parameter name: (exp_avg, exp_avg_sq)} as saved (fp32, CPU)."""
        from safetensors.torch import load_file

        flat = load_file(str(self.path / ADAM))
        names = sorted({key.rsplit(".", 1)[0] for key in flat})
        missing = [n for n in names if f"{n}.exp_avg" not in flat or f"{n}.exp_avg_sq" not in flat]
        if missing:
            raise InputError(f"{self.path / ADAM}: incomplete Adam state for {missing[:3]}")
        return {n: (flat[f"{n}.exp_avg"], flat[f"{n}.exp_avg_sq"]) for n in names}


def save_adam_state(folder: str | os.PathLike[str], state: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> Path:
    """Write {parameter name: (exp_avg, exp_avg_sq)} to `folder/adam.safetensors` (atomically)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flat: dict[str, torch.Tensor] = {}
    for name, (exp_avg, exp_avg_sq) in state.items():
        flat[f"{name}.exp_avg"] = exp_avg.detach().float().cpu().contiguous()
        flat[f"{name}.exp_avg_sq"] = exp_avg_sq.detach().float().cpu().contiguous()
    tmp = folder / f".{ADAM}.tmp"
    save_file(flat, str(tmp))
    os.replace(tmp, folder / ADAM)
    return folder / ADAM


def write_checkpoint_info(folder: str | os.PathLike[str], *, epoch: int, learning_rate: float, step: int) -> Path:
    """Write `checkpoint.json` last: its presence marks the checkpoint complete."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = {"epoch": int(epoch), "learning_rate": float(learning_rate), "step": int(step)}
    tmp = folder / f".{INFO}.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, folder / INFO)
    return folder / INFO


def load_checkpoints(warmup_dir: str | os.PathLike[str]) -> list[WarmupCheckpoint]:
    """The complete checkpoints of a warm-up, in epoch order (a folder without `checkpoint.json` is skipped:
    an epoch interrupted while saving)."""
    root = Path(warmup_dir)
    if not root.is_dir():
        raise InputError(f"{root}: no such LESS warm-up folder (make one with `hf-select less-warmup`)")
    found = []
    for child in root.iterdir():
        match = _EPOCH_DIR.match(child.name)
        if match and (child / INFO).is_file():
            info = json.loads((child / INFO).read_text())
            found.append(WarmupCheckpoint(child, int(info["epoch"]), float(info["learning_rate"]), int(info["step"])))
    return sorted(found, key=lambda c: c.epoch)


def checkpoint_weights(checkpoints: Sequence[WarmupCheckpoint]) -> list[float]:
    """LESS's checkpoint weights: each epoch's mean learning rate, normalised to sum 1."""
    rates = [c.learning_rate for c in checkpoints]
    total = sum(rates)
    if not rates or total <= 0:
        raise InputError("LESS needs at least one checkpoint with a positive learning rate")
    return [r / total for r in rates]


@dataclass
class WarmupRecord:
    """`warmup.json`: what the warm-up trained, enough for the scorer to rebuild the same model and encoding."""

    model: str
    revision: str | None = None
    template: str | None = None
    max_length: int = 2048
    lora: dict[str, Any] = field(default_factory=dict)  # peft LoraConfig fields (r, lora_alpha, ...)
    training: dict[str, Any] = field(default_factory=dict)  # epochs, lr, schedule, warmup ratio, batch size, seed
    sample_seed: int = 0
    sample_indices: list[int] = field(default_factory=list)  # pool positions trained on (and so held out)
    source: dict[str, Any] = field(default_factory=dict)  # the pool's provenance (dataset, revision, sha256)

    def save(self, warmup_dir: str | os.PathLike[str]) -> Path:
        path = Path(warmup_dir) / RECORD
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{RECORD}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, warmup_dir: str | os.PathLike[str]) -> WarmupRecord:
        path = Path(warmup_dir) / RECORD
        if not path.is_file():
            raise InputError(f"{path}: missing; is {warmup_dir} a LESS warm-up folder?")
        data = json.loads(path.read_text())
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


__all__ = [
    "WarmupCheckpoint",
    "WarmupRecord",
    "checkpoint_weights",
    "epoch_folder",
    "load_checkpoints",
    "save_adam_state",
    "write_checkpoint_info",
]
