"""LESS (Xia et al. 2024): gradient-influence scores from a LoRA warm-up (`hf-select less-warmup`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from ..conversation import FormatName, RowError, Turn
from ..encoding import ConversationEncoder, Segments, TemplateName, Units, encode_segments, render_segments, truncate
from ..errors import InputError
from ..model_cache import MODELS
from .base import Scorer, device_for, runtime, use_spawn_start_method


@dataclass(eq=False)
class LESSResources:
    encoder: ConversationEncoder
    model: Any  # hf_select.less.model.WarmupModel
    means: Any = None  # [target sets, checkpoints, dim] on the model's device
    projection: Any = None


@dataclass(kw_only=True)
class LESSScorer(Scorer):
    """Adds `less`: `max over target sets of sum_i w_i mean_v cos(g_i(z), g_i(v))` (METHODS.md, "LESS").

    `g_i(z)` is pool row z's gradient of its response loss (the mean next-token NLL over the response tokens,
    as `ce`) with respect to the warm-up's LoRA weights at checkpoint i, Adam-preconditioned with that
    checkpoint's moments (`(0.9m + 0.1g) / sqrt(0.999v + 0.001g^2 + 1e-8)`, no bias correction, as the
    reference); `g_i(v)` is a target row's plain gradient; `w_i` the checkpoints' learning rates normalised to
    sum 1. Targets are a seeded sample of `n_targets` pool rows outside the warm-up's own sample (the
    study's untargeted use), or the validation sets at `targets` (several: the max over sets, as LESS).

    `projection="none"` (default) is exact: the mean of cosines is one dot product with the mean of the
    targets' unit gradients, so neither a projection nor a gradient store is needed. `"rademacher"`
    projects to `proj_dim` with a seeded +-1 matrix (`hf_select.less.projection`), as the reference does.
    Target means are computed once (before any worker starts) and cached under `cache_dir`.

    Example:
        >>> from datasets import Dataset
        >>> pool = Dataset.from_dict({"prompt": ["Hi", "2+2?"], "response": ["Hello!", "4"]})
        >>> scorer = LESSScorer(warmup="runs/warmup", n_targets=1)  # doctest: +SKIP
        >>> scored = scorer.map(pool)  # doctest: +SKIP
        >>> scored.column_names[-2:]  # doctest: +SKIP
        ['less', 'less_error']
    """

    warmup: str
    """The LESS warm-up folder (`hf-select less-warmup`): base model, template, LoRA checkpoints, Adam states."""
    targets: tuple[str, ...] = ()
    """Validation sets (paths, comma-separated) to select for; empty: a held-out sample of the pool itself."""
    n_targets: int = 500
    """In-pool targets: rows sampled from the pool outside the warm-up's sample."""
    target_seed: int = 0
    """In-pool targets: the sample's seed."""
    projection: Literal["none", "rademacher"] = "none"
    """`none`: exact cosines of the full LoRA gradients; `rademacher`: the reference's random projection."""
    proj_dim: int = 8192
    """Rademacher projection: its dimension."""
    proj_seed: int = 0
    """Rademacher projection: its seed."""
    template: TemplateName | None = None
    """None: the warm-up's template."""
    max_length: int | None = None
    """None: the warm-up's max_length."""
    turns: Literal["last", "all"] | None = None
    """`last`: the loss of the last assistant turn; `all`: of every assistant turn; None: the warm-up's."""
    format: FormatName | None = None
    columns: tuple[str, ...] | None = None
    dtype: str = "auto"
    trust_remote_code: bool = False
    batch_tokens: int | None = runtime(None)
    """Micro-batch budget: rows x padded length per backward pass (None: 4,096 on CPU, 16,384 on GPU)."""
    cache_dir: str | None = runtime(None)
    """Where target gradient means are cached (None: `<warmup>/targets`)."""
    store: str | None = runtime(None)
    """With a projection: write each pool row's projected vectors under this folder, for reuse."""

    method: ClassVar[str] = "less"
    score_columns: ClassVar[tuple[str, ...]] = ("less",)
    error_column: ClassVar[str] = "less_error"
    needs_device: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets)
        if self.columns is not None:
            self.columns = tuple(self.columns)
        if self.projection not in ("none", "rademacher"):
            raise InputError(f"projection must be 'none' or 'rademacher', got {self.projection!r}")
        if self.n_targets < 1 or self.proj_dim < 1:
            raise InputError("n_targets and proj_dim must be at least 1")
        if self.store and self.projection == "none":
            raise InputError("store= writes projected vectors: it needs projection='rademacher'")
        if self.max_length is not None and self.max_length < 2:
            raise InputError(f"max_length must be at least 2, got {self.max_length}")
        from ..less.checkpoints import load_checkpoints

        self._record()  # fail now, naming the folder, not when the first batch runs
        if not load_checkpoints(self.warmup):
            raise InputError(f"{self.warmup}: no complete checkpoint (epoch-N/checkpoint.json) in this LESS warm-up")
        self._targets_key: str | None = None
        self._batch_indices: Sequence[int] | None = None
        self._batch_rows: list[int] = []
        use_spawn_start_method()

    def _record(self) -> Any:
        """The warm-up's `WarmupRecord`, read once per process (rows and batches ask for its settings)."""
        from ..less.checkpoints import WarmupRecord

        if getattr(self, "_warmup_record", None) is None:  # not pickled: a worker reads its own
            self._warmup_record = WarmupRecord.load(self.warmup)
        return self._warmup_record

    @property
    def _turns(self) -> Literal["last", "all"]:
        return self.turns or self._record().training.get("turns", "last")

    # --- identity: the warm-up's content and the prepared targets change scores -------------------------
    def fingerprint(self) -> str:
        from ..less.model import warmup_hash

        payload = f"{super().fingerprint()}/{warmup_hash(self.warmup)}"
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def resource_key(self) -> Any:
        return (*super().resource_key(), self._targets_key)

    def __getstate__(self) -> dict[str, Any]:
        from ..less.model import warmup_hash

        return {**super().__getstate__(), "warmup_hash": warmup_hash(self.warmup), "targets_key": self._targets_key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state.pop("warmup_hash", None)
        key = state.pop("targets_key", None)
        super().__setstate__(state)
        self._targets_key = key
        self._batch_indices = None
        self._batch_rows = []

    def describe(self) -> dict[str, Any]:
        from ..less.model import warmup_hash

        record = self._record()
        warmup = {"sha256": warmup_hash(self.warmup), "model": record.model, "revision": record.revision,
                  "template": record.template}  # fmt: skip
        return {**super().describe(), "warmup": warmup, "targets_key": self._targets_key}

    # --- resources ------------------------------------------------------------------------------------
    def token_source(self) -> tuple[str, str | None]:
        """(tokenizer, revision) of the warm-up: its own tokenizer, so that token ids match training's."""
        record = self._record()
        return record.training.get("tokenizer") or record.model, record.revision

    def _encoder(self) -> ConversationEncoder:
        from ..tokenizer import load_tokenizer

        name, revision = self.token_source()
        tokenizer = load_tokenizer(name, revision, self.trust_remote_code)
        return ConversationEncoder(tokenizer, self.template or self._record().template or "auto")

    def _model(self, device: str) -> Any:
        from ..less.model import WarmupModel, warmup_hash

        key = ("less-warmup", self.warmup, warmup_hash(self.warmup), device, self.dtype, self.trust_remote_code)
        return MODELS.get(key, lambda: WarmupModel(self.warmup, device=device, dtype=self.dtype,
                                                   trust_remote_code=self.trust_remote_code))  # fmt: skip

    def _projection(self, model: Any) -> Any:
        from ..less.projection import RademacherProjection

        if self.projection == "none":
            return None
        return RademacherProjection(model.gradients.dim, self.proj_dim, self.proj_seed)

    def load(self, device: str) -> LESSResources:
        if self._targets_key is None:
            if not self.targets:
                raise InputError(
                    "LESS with in-pool targets needs the whole pool first: use scorer.map(ds), or call "
                    "scorer.prepare_targets(ds) before ds.map(scorer, batched=True)"
                )
            self.prepare_targets()  # validation sets: computed once, under a file lock
        model = self._model(device)
        resources = LESSResources(self._encoder(), model, projection=self._projection(model))
        from safetensors.torch import load_file

        resources.means = load_file(str(self._cache_path()))["means"].to(device)
        return resources

    def _batch_tokens(self, device: str) -> int:
        return self.batch_tokens or (16384 if device.startswith("cuda") else 4096)

    # --- targets ------------------------------------------------------------------------------------
    def _cache_path(self) -> Path:
        root = Path(self.cache_dir) if self.cache_dir else Path(self.warmup) / "targets"
        return root / f"{self._targets_key}.safetensors"

    def target_sample(self, n_rows: int) -> list[int]:
        """In-pool targets: `n_targets` positions (sorted) drawn with `target_seed` from the rows outside
        the warm-up's sample (all of them when there are fewer)."""
        trained = set(self._record().sample_indices)
        candidates = np.array([i for i in range(n_rows) if i not in trained], dtype=np.int64)
        if not len(candidates):
            raise InputError("every pool row is in the warm-up's sample: no row is left to hold out as targets")
        rng = np.random.default_rng(self.target_seed)
        return sorted(rng.choice(candidates, size=min(self.n_targets, len(candidates)), replace=False).tolist())

    def prepare_targets(self, dataset: Any = None) -> Path:
        """Compute (or find in the cache) the target means, once, in this process; workers then read them.
        `dataset` is the pool, needed for in-pool targets only. Returns the cache file."""
        from ..less.model import warmup_hash
        from ..less.targets import cached, target_means

        if self.targets:
            from ..pool import load_pool

            sets = [load_pool(path).dataset for path in self.targets]
            identity: list[Any] = [[path, ds._fingerprint] for path, ds in zip(self.targets, sets, strict=True)]
            scorers = [replace(self, format=None, columns=None) for _ in sets]  # each set's own format
        else:
            if dataset is None or not hasattr(dataset, "select"):
                raise InputError("LESS with in-pool targets needs the pool as a Dataset (not streaming)")
            rows = self.target_sample(len(dataset))
            sets = [dataset.select(rows)]
            identity = [[getattr(dataset, "_fingerprint", None), hashlib.sha256(str(rows).encode()).hexdigest()]]
            scorers = [self]
        config = {k: v for k, v in self.config().items() if k not in ("strict",)}
        payload = {"version": self.version, "warmup": warmup_hash(self.warmup), "targets": identity, "config": config}
        self._targets_key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]
        device = device_for(0)

        def compute() -> Any:
            model = self._model(device)
            resources = LESSResources(self._encoder(), model)
            units = []
            for k, (scorer, ds) in enumerate(zip(scorers, sets, strict=True)):
                _, encoded, errors = scorer.units(ds[:], resources)
                if not encoded:
                    reason = next((e for e in errors if e), "no rows")
                    where = self.targets[k] if self.targets else "the in-pool target sample"
                    raise InputError(f"LESS targets: no row of {where} can be scored ({len(ds)} rows; {reason})")
                units.append(encoded)
            return target_means(model, units, projection=self._projection(model),
                                batch_tokens=self._batch_tokens(device))  # fmt: skip

        cached(self._cache_path(), compute)
        return self._cache_path()

    def prepare_pool(self, dataset: Any) -> None:
        """Prepare the targets (in this process, once), before `map` or a sharded run scores `dataset`."""
        self.prepare_targets(dataset)

    def preload(self) -> None:
        if self._targets_key is None and self.targets:
            self.prepare_targets()

    # --- the row loop ---------------------------------------------------------------------------------
    def prepare(self, turns: list[Turn], resources: LESSResources) -> Segments:
        return render_segments(resources.encoder, turns, self._turns)

    def encode(self, prepared: list[Segments], resources: LESSResources) -> list[Units | RowError]:
        max_length = self.max_length or self._record().max_length
        out: list[Units | RowError] = []
        for encoded in encode_segments(resources.encoder, prepared):
            try:
                ids, spans = truncate(encoded, max_length)
                if not any(end > max(start, 1) for start, end in spans):
                    raise RowError("the response has no tokens")
                out.append((ids, spans))
            except RowError as err:
                out.append(err)
        return out

    def units(self, batch: Mapping[str, Sequence[Any]], resources: Any) -> tuple[list[int], list[Any], list]:
        rows, units, errors = super().units(batch, resources)
        self._batch_rows = rows  # for `store`: which batch position each unit is
        return rows, units, errors

    def __call__(self, batch: Mapping[str, Sequence[Any]], *extra: Any) -> dict[str, np.ndarray]:
        self._batch_indices = extra[0] if extra and isinstance(extra[0], Sequence | np.ndarray) else None
        return super().__call__(batch, *extra)

    def compute(self, units: list[Units], resources: LESSResources) -> tuple[dict[str, list], list[str | None]]:
        from ..less.score import pool_scores

        scores = pool_scores(resources.model, resources.means, units, projection=resources.projection,
                             batch_tokens=self._batch_tokens(resources.model.device),
                             on_vectors=self._store if self.store else None)  # fmt: skip
        errors = [None if np.isfinite(s) else "the row's gradient is not finite" for s in scores]
        return {"less": [float(s) if e is None else None for s, e in zip(scores, errors, strict=True)]}, errors

    def _store(self, checkpoint: int, batch: list[int], vectors: Any) -> None:
        """Write one micro-batch's projected vectors and their dataset rows (positions in the batch when `map`
        was not given indices) to `store/epoch-N/`."""
        import torch
        from safetensors.torch import save_file

        positions = [self._batch_rows[j] for j in batch]
        rows = [int(self._batch_indices[p]) for p in positions] if self._batch_indices is not None else positions
        epoch = Path(str(self.store)) / f"epoch-{checkpoint + 1}"
        epoch.mkdir(parents=True, exist_ok=True)
        name = f"rows-{min(rows)}-{max(rows)}-{hashlib.sha256(str(rows).encode()).hexdigest()[:8]}.safetensors"
        tensors = {"vectors": vectors.half().cpu().contiguous(), "rows": torch.as_tensor(rows, dtype=torch.int64)}
        save_file(tensors, str(epoch / name))
