"""LESS (gradient-influence selection): LoRA warm-up, checkpoints, per-row gradient scores.

See `../shared/METHODS.md` ("LESS"). The warm-up writes one checkpoint per epoch
(`hf_select.less.checkpoints`); the scorer reads them.
"""

from .checkpoints import WarmupRecord, checkpoint_weights, load_checkpoints
from .warmup_lora import LESSWarmup, warmup

__all__ = ["LESSWarmup", "WarmupRecord", "checkpoint_weights", "load_checkpoints", "warmup"]
