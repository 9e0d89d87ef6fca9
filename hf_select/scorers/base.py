"""The scorer protocol: a light, picklable callable for `Dataset.map(scorer, batched=True)`.

A scorer holds only its configuration (dataclass fields). Heavy resources (tokenizer, model) load
lazily, once per process, on `cuda:{rank}` when a GPU is there, and never travel in its pickled state.
Its pickled state is its configuration, so `datasets` hashes it deterministically: a re-run after a
crash reuses every finished cache shard and recomputes only the missing ones.

Subclasses declare `method`, `score_columns` (the columns they add), `error_column`, and implement
`load(device)` and `score(batch, resources)`. A scorer that adds one vector per row (an embedding) names
it in `vector_columns`.

Output types are fixed whatever the batch holds, so plain `ds.map(scorer, batched=True)` never infers a
`null` column from a first batch of failures: score columns are float64 (NaN where a row failed; token
counts are exact integers stored as float64) and the error column is a string, empty where the row
succeeded. A vector column is `List(float32)`: `score()` returns it as a [rows, dim] array whose `dim`
comes from the loaded resources (a model's hidden size), so a batch of failures still writes float32
vectors, and a failed row's vector is all NaN (same length as the others).

Example:
    >>> from datasets import Dataset
    >>> from hf_select import TokenLengthScorer
    >>> ds = Dataset.from_dict({"prompt": ["Hi"], "response": ["Hello!"]})
    >>> scorer = TokenLengthScorer(tokenizer="embedded:smollm2", template="paper")
    >>> ds = ds.map(scorer, batched=True)  # or scorer.map(ds, num_proc=2)
    >>> ds[0]["n_tokens_response"]
    2.0
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from ..errors import RowError

_RESOURCES: dict[tuple[str, str], Any] = {}  # (resource key, device) -> resources, one process's cache
_MAX_RESOURCES = 2


def use_spawn_start_method() -> bool:
    """Make `datasets`' worker processes start with `spawn`. A forked worker cannot use CUDA once the parent
    has touched it (datasets #6435), and on CPU it hangs in torch's OpenMP pool once the parent has run a
    model. Model scorers call this when they are created. Returns whether it changed anything."""
    import multiprocess

    if multiprocess.get_start_method(allow_none=True) == "spawn":
        return False
    multiprocess.set_start_method("spawn", force=True)
    return True


def device_for(rank: int | None) -> str:
    """`cuda:{rank % n_gpus}` when CUDA is available (rank None means 0), else `cpu`."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{(rank or 0) % torch.cuda.device_count()}"
    return "cpu"


@dataclass(kw_only=True)
class Scorer(ABC):
    """Base class of every scorer. Subclasses are dataclasses whose fields are their whole configuration."""

    strict: bool = False
    """Raise `RowError` (with the row index) on a bad row instead of writing NaN and a reason."""

    method: ClassVar[str]
    version: ClassVar[int] = 1  # bump when a change alters scores, so cached results are not reused
    score_columns: ClassVar[tuple[str, ...]]
    vector_columns: ClassVar[tuple[str, ...]] = ()
    """Columns of one float32 vector per row; `score()` returns each as a [rows, dim] array-like."""
    error_column: ClassVar[str]
    needs_device: ClassVar[bool] = False

    # --- configuration and identity -------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The scorer's configuration: everything that determines its output."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def fingerprint(self) -> str:
        """A stable hash of the class, its version and its configuration."""
        payload = {"class": f"{type(self).__module__}.{type(self).__qualname__}", "version": self.version}
        payload["config"] = self.config()
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """The scorer's entry in a selection record: method, fingerprint, configuration, and provenance
        of what it loads (subclasses add tokenizer / model revisions and the resolved template)."""
        return {"method": self.method, "fingerprint": self.fingerprint(), "config": self.config()}

    def resource_key(self) -> str:
        """What identifies the loaded resources; scorers sharing it share one loaded copy per process."""
        return self.fingerprint()

    def __getstate__(self) -> dict[str, Any]:
        # Only configuration travels to workers and into datasets' hash, never a loaded model.
        return {"version": self.version, **self.config()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state.pop("version", None)
        for key, value in state.items():
            object.__setattr__(self, key, value)

    # --- resources ---------------------------------------------------------------------------------
    @abstractmethod
    def load(self, device: str) -> Any:
        """Load what scoring needs (tokenizer, model) on `device`. Called once per process."""

    def preload(self) -> None:
        """Load this scorer's CPU resources (e.g. a tokenizer) in this process now. Before a forked
        `ds.map(scorer, num_proc=N)`, the workers then inherit them instead of each importing transformers
        and loading them again. GPU scorers load in their workers, on their own device."""
        if not self.needs_device:
            self.resources()

    def resources(self, rank: int | None = None) -> Any:
        device = device_for(rank) if self.needs_device else "cpu"
        key = (self.resource_key(), device)
        if key not in _RESOURCES:
            while len(_RESOURCES) >= _MAX_RESOURCES:
                _RESOURCES.pop(next(iter(_RESOURCES)))
            _RESOURCES[key] = self.load(device)
        return _RESOURCES[key]

    # --- scoring -------------------------------------------------------------------------------------
    @abstractmethod
    def score(
        self, batch: Mapping[str, Sequence[Any]], resources: Any
    ) -> tuple[dict[str, Sequence[float | None]], list[str | None]]:
        """Score a batch: (new columns, None or NaN where a row failed; per-row error reasons or None)."""

    def __call__(self, batch: Mapping[str, Sequence[Any]], *extra: Any) -> dict[str, np.ndarray]:
        """`datasets` calls this with `(batch)`, `(batch, rank)`, `(batch, indices)` or `(batch, indices, rank)`."""
        indices: Sequence[int] | None = None
        rank: int | None = None
        for arg in extra:
            if isinstance(arg, Sequence):
                indices = arg
            else:
                rank = arg
        n_rows = len(next(iter(batch.values()))) if batch else 0
        columns, errors = self.score(batch, self.resources(rank))
        for name, values in columns.items():
            if len(values) != n_rows:
                raise RuntimeError(f"{type(self).__name__} returned {len(values)} values of {name!r} for {n_rows} rows")
        if self.strict:
            for i, reason in enumerate(errors):
                if reason is not None:
                    where = indices[i] if indices is not None else None
                    raise RowError(reason if where is not None else f"{reason} (row {i} of this batch)", where)
        out = {name: np.array(columns[name], dtype=np.float64) for name in self.score_columns}
        failed = np.array([reason is not None for reason in errors], dtype=bool)
        for name in self.vector_columns:
            out[name] = self._vectors(name, columns[name], n_rows)
        for name, values in out.items():
            if np.isnan(values[~failed]).any():
                raise RuntimeError(f"{type(self).__name__} produced NaN in {name!r} without an error reason")
            values[failed] = np.nan  # a failed row never keeps a partial score
        out[self.error_column] = np.array([reason or "" for reason in errors], dtype=object).astype(str)
        return out

    def _vectors(self, name: str, values: Any, n_rows: int) -> np.ndarray:
        """A vector column as a fresh float32 [rows, dim] array (datasets stores it as `List(float32)`)."""
        matrix = np.array(values, dtype=np.float32)
        if n_rows == 0 and matrix.ndim != 2:
            matrix = matrix.reshape(0, 0)
        if matrix.ndim != 2:
            raise RuntimeError(
                f"{type(self).__name__} returned {name!r} with shape {matrix.shape}: expected [rows, dim]"
            )
        return matrix

    @property
    def columns_added(self) -> tuple[str, ...]:
        return (*self.score_columns, *self.vector_columns, self.error_column)

    def map(self, dataset: Any, *, num_proc: int | None = None, batch_size: int = 1000, **kwargs: Any) -> Any:
        """`dataset.map(self, batched=True, with_indices=True, with_rank=True, ...)` with a progress label."""
        kwargs.setdefault("desc", f"hf-select {self.method}")
        if num_proc is not None and num_proc > 1:
            self.preload()
        return dataset.map(
            self,
            batched=True,
            with_indices=True,
            with_rank=True,
            num_proc=num_proc,
            batch_size=batch_size,
            **kwargs,
        )
