"""The scorer protocol: a light, picklable callable for `Dataset.map(scorer, batched=True)`.

A scorer holds only its configuration (dataclass fields). Heavy resources (tokenizer, model) load
lazily, once per process, on `cuda:{rank}` when a GPU is there, and never travel in its pickled state.
Its pickled state is its configuration, so `datasets` hashes it deterministically: a re-run after a
crash reuses every finished cache shard and recomputes only the missing ones.

Subclasses declare `method`, `score_columns` (the columns they add), `error_column`, and implement
`load(device)` and the three steps of the one row loop that `score(batch, resources)` runs: `prepare(turns,
resources)` renders one normalised row (raising `RowError` for a bad one), `encode(prepared, resources)`
tokenises the rendered rows in one batched call, and `compute(units, resources)` scores the rows that
encoded. The loop normalises the rows, collects each failure's reason, and scatters the results back to
their rows: no row is dropped, reordered or given another row's score. A scorer that adds one vector per
row (an embedding) names it in `vector_columns`.

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
    >>> ds = ds.map(scorer, batched=True)  # or scorer.map(ds, num_proc=2, checkpoint_every=10_000)
    >>> ds[0]["n_tokens_response"]
    2.0
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from .. import lifeline, progress
from ..conversation import FormatSpec, Turn, batch_turns, detect_format
from ..errors import InputError, RowError
from ..model_cache import MODELS

NOT_BATCHED = (
    "{name} scores whole batches: call ds.map(scorer, batched=True) (or scorer.map(ds)); it was given one row at a time"
)


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


def runtime(default: Any, *, secret: bool = False) -> Any:
    """A field that changes how a scorer runs (a timeout, a token), never what it writes: it is left out of
    `config()`, the fingerprint and the records, and travels to workers only when not at its default."""
    return field(default=default, repr=not secret, compare=not secret, metadata={"runtime": True})


def _is_runtime(f: Field) -> bool:
    return bool(f.metadata.get("runtime"))


def _batch_rows(batch: Mapping[str, Any], name: str) -> int:
    """Rows in a `datasets` batch; an `InputError` when `map` was called without `batched=True`."""
    n = None
    for value in batch.values():
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence | np.ndarray):
            raise InputError(NOT_BATCHED.format(name=name))
        n = len(value) if n is None else n
    return n or 0


@dataclass(kw_only=True)
class Scorer(ABC):
    """Base class of every scorer. Subclasses are dataclasses whose fields are their whole configuration."""

    strict: bool = False
    """Raise `RowError` (with the row index) on a bad row instead of writing NaN and a reason."""

    method: ClassVar[str]
    version: ClassVar[int] = 1  # bump when a change alters scores, so cached results are not reused
    score_columns: ClassVar[tuple[str, ...]]
    vector_columns: ClassVar[tuple[str, ...]] = ()
    """Columns of one float32 vector per row; `compute()` returns each as a [rows, dim] array-like."""
    error_column: ClassVar[str]
    needs_device: ClassVar[bool] = False
    engine_passes: ClassVar[int] = 1  # engine calls per batch, for the progress bar (SelectIT: one per model)

    # --- configuration and identity -------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The scorer's configuration: everything that determines its output."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not _is_runtime(f)}

    def fingerprint(self) -> str:
        """A stable hash of the class, its version and its configuration."""
        payload = {"class": f"{type(self).__module__}.{type(self).__qualname__}", "version": self.version}
        payload["config"] = self.config()
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """The scorer's entry in a selection record: method, fingerprint, configuration, and provenance
        of what it loads (subclasses add tokenizer / model revisions and the resolved template)."""
        return {"method": self.method, "fingerprint": self.fingerprint(), "config": self.config()}

    def resource_key(self) -> Hashable:
        """What identifies the loaded resources; scorers sharing it share one loaded copy per process."""
        return (self.fingerprint(), *(getattr(self, f.name) for f in fields(self) if _is_runtime(f)))

    def __getstate__(self) -> dict[str, Any]:
        # Only configuration travels to workers and into datasets' hash, never a loaded model; runtime
        # options only when set, so that a scorer at its defaults hashes as it always did.
        state = {"version": self.version, **self.config()}
        for f in fields(self):
            if _is_runtime(f) and getattr(self, f.name) != (f.default if f.default is not MISSING else None):
                state[f.name] = getattr(self, f.name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state.pop("version", None)
        for f in fields(self):
            if _is_runtime(f):
                object.__setattr__(self, f.name, f.default)
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
        """This scorer's loaded resources on its device, from the process's one model cache."""
        device = device_for(rank) if self.needs_device else "cpu"
        return MODELS.get((self.resource_key(), device), lambda: self.load(device))

    # --- the row loop --------------------------------------------------------------------------------
    def format_spec(self, column_names: Sequence[str]) -> FormatSpec:
        return detect_format(column_names, getattr(self, "format", None), getattr(self, "columns", None))

    def prepare(self, turns: list[Turn], resources: Any) -> Any:
        """Render one row's normalised turns for `encode`; raise `RowError` when the row cannot be scored."""
        return turns

    def encode(self, prepared: list[Any], resources: Any) -> list[Any]:
        """Tokenise the prepared rows in one batched call: one unit per row, or a `RowError` in its place."""
        return prepared

    @abstractmethod
    def compute(self, units: list[Any], resources: Any) -> tuple[dict[str, Any], list[str | None]]:
        """Score the rows that encoded: (each column's values for `units`, in order; per-unit error reasons,
        None where the unit was scored). Vector columns are [len(units), dim] arrays."""

    def units(self, batch: Mapping[str, Sequence[Any]], resources: Any) -> tuple[list[int], list[Any], list]:
        """(positions in the batch of the rows that encode, their units, per-row error reasons for the batch)."""
        spec = self.format_spec(list(batch))
        for column in spec.columns:
            first = next(iter(batch[column]), None) if isinstance(batch[column], Sequence) else None
            if spec.name in ("sharegpt", "messages") and isinstance(first, Mapping):  # one row's turns
                raise InputError(NOT_BATCHED.format(name=type(self).__name__))
        conversations = batch_turns(batch, spec)
        errors: list[str | None] = [None] * len(conversations)
        kept, prepared = [], []
        for i, turns in enumerate(conversations):
            try:
                if isinstance(turns, RowError):
                    raise turns
                prepared.append(self.prepare(turns, resources))
                kept.append(i)
            except RowError as err:
                errors[i] = err.reason
        rows, units = [], []
        for i, unit in zip(kept, self.encode(prepared, resources), strict=True):
            if isinstance(unit, RowError):
                errors[i] = unit.reason
            else:
                rows.append(i)
                units.append(unit)
        return rows, units, errors

    def score(
        self, batch: Mapping[str, Sequence[Any]], resources: Any
    ) -> tuple[dict[str, np.ndarray], list[str | None]]:
        """Score a batch: (new columns over the whole batch, NaN where a row failed; per-row error reasons)."""
        rows, units, errors = self.units(batch, resources)
        values, unit_errors = self.compute(units, resources)
        for i, reason in zip(rows, unit_errors, strict=True):
            if reason is not None:
                errors[i] = reason
        columns = {}
        for name, computed in values.items():
            array = np.asarray(computed, dtype=np.float32 if name in self.vector_columns else np.float64)
            if len(array) != len(units):
                raise RuntimeError(f"{type(self).__name__} computed {len(array)} {name!r} for {len(units)} rows")
            full = np.full((len(errors), *array.shape[1:]), np.nan, dtype=array.dtype)
            full[rows] = array
            columns[name] = full
        return columns, errors

    def __call__(self, batch: Mapping[str, Sequence[Any]], *extra: Any) -> dict[str, np.ndarray]:
        """`datasets` calls this with `(batch)`, `(batch, rank)`, `(batch, indices)` or `(batch, indices, rank)`:
        with `with_rank=True` the rank always comes last."""
        indices: Sequence[int] | None = None
        rank: int | None = None
        if len(extra) == 2:
            indices, rank = extra
        elif len(extra) == 1 and isinstance(extra[0], Sequence | np.ndarray):
            indices = extra[0]
        elif len(extra) == 1:
            rank = extra[0]
        elif extra:
            raise TypeError(f"{type(self).__name__} takes (batch, [indices,] [rank]), got {len(extra) + 1} arguments")
        n_rows = _batch_rows(batch, type(self).__name__)
        lifeline.exit_with_parent()
        resources = self.resources(rank)
        show = None if self.needs_device else False  # a model scorer's batch takes minutes; others seconds
        desc = f"{self.method} micro-batches"
        with progress.batch(n_rows, passes=self.engine_passes, desc=desc, show=show, rank=rank):
            columns, errors = self.score(batch, resources)
        for name, values in columns.items():
            if len(values) != n_rows:
                raise RuntimeError(f"{type(self).__name__} returned {len(values)} values of {name!r} for {n_rows} rows")
        if self.strict:
            for i, reason in enumerate(errors):
                if reason is not None:
                    if indices is None:
                        where = f"row {i} of this batch; pass with_indices=True for the dataset's row index"
                        raise RowError(f"{reason} ({where})")
                    raise RowError(reason, int(indices[i]))
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

    def prepare_pool(self, dataset: Any) -> None:
        """Work that needs the whole pool before any batch is scored (LESS: its in-pool target sample), done
        once in the driving process by `map` and by sharded runs (`hf_select.distributed`); what it prepares
        travels to the workers with the pickled scorer. Nothing by default."""
        return None  # a hook: most scorers need nothing from the whole pool

    def map(self, dataset: Any, **options: Any) -> Any:
        """`dataset.map(self, batched=True, with_indices=True, with_rank=True, ...)` with a progress bar per
        micro-batch; the scored pool remembers the input's provenance with this scorer added, so a selector
        records both (`hf_select.provenance`). Options: `num_proc`, `batch_size` (1000),
        `checkpoint_every=N` (score N rows at a time into sidecar files, under `checkpoint_dir` or the
        datasets cache, that a re-run after a crash loads instead of scoring again), `progress=False` (no
        bar), and any other `Dataset.map` argument. See `hf_select.scorers.checkpoint.map_scorer`."""
        from ..provenance import derived
        from .checkpoint import map_scorer

        if "progress" in options:
            options["show_progress"] = options.pop("progress")
        self.prepare_pool(dataset)
        scored = map_scorer(self, dataset, **options)
        return derived(scored, dataset, self.describe()) if hasattr(scored, "_fingerprint") else scored
