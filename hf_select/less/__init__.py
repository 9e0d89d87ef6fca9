"""LESS (gradient-influence selection): LoRA warm-up, checkpoints, per-row gradient scores.

See `../shared/METHODS.md` ("LESS"). The warm-up writes one checkpoint per epoch
(`hf_select.less.checkpoints`); the scorer reads them.
"""
