"""A LESS warm-up loaded for scoring: the base model with its LoRA, every checkpoint's weights and Adam state,
and the unit vectors LESS compares (per-row gradients, Adam-preconditioned or plain, optionally projected).

Example:
    >>> lm = WarmupModel("path/to/warmup", device="cpu")  # doctest: +SKIP
    >>> vectors = lm.vectors(units, checkpoint=0, adam=True)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from .. import embedded, progress
from ..encoding import Units
from ..engine import micro_batches, resolve_dtype
from ..errors import InputError
from .checkpoints import ADAM, INFO, RECORD, WarmupRecord, checkpoint_weights, load_checkpoints
from .gradients import LoRAGradients, adam_precondition
from .projection import RademacherProjection

ADAPTER = "adapter_model.safetensors"
GRADIENT_BYTES = 2**31
"""Most bytes of flat float32 gradients in one micro-batch (Adam preconditioning makes a few temporaries of the
same size): with a 1B model's r=128 LoRA (27M weights) about 20 rows."""
_HASHES: dict[tuple, str] = {}


def warmup_files(warmup_dir: str | os.PathLike[str]) -> list[Path]:
    """The files that determine LESS scores: the record and each complete checkpoint's adapter and Adam state."""
    root = Path(warmup_dir)
    files = [root / RECORD]
    for ckpt in load_checkpoints(root):
        files += [ckpt.path / "adapter_config.json", ckpt.path / ADAPTER, ckpt.path / ADAM, ckpt.path / INFO]
    return files


def warmup_hash(warmup_dir: str | os.PathLike[str]) -> str:
    """sha256 of the warm-up's files' contents (memoised per process by their sizes and times)."""
    files = warmup_files(warmup_dir)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(f"LESS warm-up {warmup_dir}: missing {', '.join(missing[:3])}")
    stamp = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp not in _HASHES:
        digest = hashlib.sha256()
        for f in files:
            digest.update(f"{f.relative_to(warmup_dir)}\0".encode())
            with open(f, "rb") as handle:
                for chunk in iter(lambda h=handle: h.read(1 << 22), b""):
                    digest.update(chunk)
        _HASHES[stamp] = digest.hexdigest()
    return _HASHES[stamp]


class WarmupModel:
    """The warm-up's base model with its LoRA on `device`, switchable between checkpoints."""

    def __init__(
        self,
        warmup_dir: str | os.PathLike[str],
        *,
        device: str = "cpu",
        dtype: str = "auto",
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        from peft import PeftModel
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        self.record = WarmupRecord.load(warmup_dir)
        self.checkpoints = load_checkpoints(warmup_dir)
        if not self.checkpoints:
            raise InputError(f"{warmup_dir}: no complete checkpoint (epoch-N/checkpoint.json)")
        self.weights = checkpoint_weights(self.checkpoints)
        self.device = device
        kwargs = {"revision": self.record.revision, "dtype": resolve_dtype(dtype, device)}
        kwargs["attn_implementation"] = attn_implementation or "sdpa"
        path = embedded.resolve(self.record.model, weights=True)
        try:
            base = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
            self.model = PeftModel.from_pretrained(base, str(self.checkpoints[0].path), is_trainable=True)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot load the LESS warm-up {warmup_dir}: {err}") from err
        self.model.to(device).eval()  # eval: LoRA dropout off, as LESS computes its gradients
        self.gradients = LoRAGradients(self.model)
        self.adapters = [load_file(str(c.path / ADAPTER), device=str(device)) for c in self.checkpoints]
        self.adam = []
        for ckpt in self.checkpoints:
            state = ckpt.adam_state()
            try:
                m = self.gradients.flatten({n: s[0] for n, s in state.items()})
                v = self.gradients.flatten({n: s[1] for n, s in state.items()})
            except KeyError as err:
                raise InputError(f"{ckpt.path / ADAM}: Adam state does not match the LoRA's parameters: {err}") from err
            self.adam.append((m.to(device), v.to(device)))
        self._current = 0

    def use(self, checkpoint: int) -> None:
        """Load checkpoint `checkpoint`'s (0-based) LoRA weights into the model."""
        from peft import set_peft_model_state_dict

        if checkpoint != self._current:
            result = set_peft_model_state_dict(self.model, self.adapters[checkpoint])
            if getattr(result, "unexpected_keys", None):
                where = self.checkpoints[checkpoint].path
                raise InputError(f"{where}: unexpected adapter keys {result.unexpected_keys[:3]}")
            self._current = checkpoint

    def vectors(
        self,
        units: Sequence[Units],
        *,
        checkpoint: int,
        adam: bool,
        projection: RademacherProjection | None = None,
        batch_tokens: int = 4096,
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(positions in `units`, unit vectors [rows, dim]) per length-sorted micro-batch, for checkpoint
        `checkpoint`: each row's LoRA gradient, Adam-preconditioned (`adam=True`, pool rows) or plain (target
        rows), projected if asked, L2-normalised. Rows with a non-finite gradient come back as NaN vectors."""
        self.use(checkpoint)
        m, v = self.adam[checkpoint]
        lengths = [len(ids) for ids, _ in units]
        max_rows = max(1, GRADIENT_BYTES // (4 * self.gradients.dim))  # rows' flat gradients per micro-batch
        groups = micro_batches(lengths, batch_tokens)
        batches = (b[k : k + max_rows] for b in groups for k in range(0, len(b), max_rows))
        for batch in batches:
            g = self.gradients.per_row([units[i] for i in batch])
            if adam:
                g = adam_precondition(g, m, v)
            if projection is not None:
                g = projection(g)
            finite = torch.isfinite(g).all(dim=1, keepdim=True)
            g = torch.nn.functional.normalize(torch.where(finite, g, 0.0), dim=1)
            progress.advance(len(batch), len(units), sum(lengths[i] for i in batch))
            yield batch, torch.where(finite, g, float("nan"))
