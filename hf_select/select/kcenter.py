"""k-center (farthest-first) selection over an embedding column: DiverseEvol's selection step, exact.

**Greedy** (classic k-center): from the selected set (`init`), add one row at a time: the unselected row
farthest (Euclidean) from the selected set, i.e. with the largest distance to its nearest selected row;
each row's min-distance is updated with the distance to the newly added row only. **One-shot** (the
study's reference): every row's distance to the `init` set is computed once and the `n` farthest are
added at once. Ties go to the lowest index.

**Exact distances, fast.** A distance is `torch.cdist(x, c, compute_mode="donot_use_mm_for_euclid_dist")`
in float32 on the device: a function of the two vectors alone (not of their position, the chunking or
the batch), so a duplicated row ties exactly and `chunk_size` never changes a pick. Computing it for
every row and every new center costs twice a matrix-vector product, so the matrix-vector product is
used to rule rows out instead: `||x||^2 - 2 x.c + ||c||^2` is within `kappa * (||x|| + ||c||)^2`
(`kappa = (8d + 64) u`, u the float32 unit roundoff, or bfloat16's when torch's float32 matmul precision
is lowered) of both the exact squared distance and the squared float32 `cdist`, so a row whose bound lies
above its current min-distance keeps it, and only the others (about N/k per pick) get the exact distance.
The picks are exactly those of the plain `cdist` greedy (the CPU and CUDA `cdist` kernels may round
differently, so the two devices can break a float32 near-tie differently).

**Memory.** The float32 matrix (the caller's own when it is already a contiguous float32 array on the
device), on CPU a transposed copy of it, a few length-N vectors, and blocks of at most `chunk_size` rows
(default: 64 MiB of rows) for one new center, or of 4,096 rows x 512 centers when many centers are
added at once (`init`, one-shot). Never an N x N matrix.

Example:
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [5.0, 0.0], [0.0, 0.0]])
    >>> kcenter_indices(X, 3, selected=[0]).tolist()
    [2, 3, 1]
    >>> kcenter_indices(X, 2, selected=[0], mode="one-shot").tolist()
    [2, 3]
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from datasets import Dataset

from ..errors import BudgetError, InputError
from .base import BudgetedSelector, Picked, unrecorded
from .budget import Budget, BudgetSpec
from .selection import TOKEN_COLUMN, Selection

if TYPE_CHECKING:
    import torch
else:

    class _LazyTorch:
        """torch, imported on first use: `import hf_select` should not pay ~1 s for it."""

        def __getattr__(self, name: str) -> Any:
            import torch

            return getattr(torch, name)

    torch = _LazyTorch()

Mode = Literal["greedy", "one-shot"]
MODES = ("greedy", "one-shot")
_GATHER_FLOATS = 1 << 24  # default rows per chunk: 64 MiB of float32 rows (gathered for exact distances)
_BLOCK_ENTRIES = 1 << 21  # rows x centers per distance block when many centers are processed at once
_MANY_ROWS = 4_096  # rows per block then
_NOMM = "donot_use_mm_for_euclid_dist"


# ---------------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------------


def embedding_matrix(pool: Dataset, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 matrix of the usable rows' embeddings, their pool indices): `hf_select.cluster.embedding_array`.

    A row is usable when its embedding is a non-null list of finite numbers of the common length.
    """
    from ..cluster import embedding_array

    return embedding_array(pool, column)


# ---------------------------------------------------------------------------------------------------
# The core
# ---------------------------------------------------------------------------------------------------


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _roundoff(device: torch.device) -> float:
    """The unit roundoff that bounds torch's float32 matrix products on this device."""
    lowered = torch.get_float32_matmul_precision() != "highest"
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        lowered = True
    return 2.0**-8 if lowered else 2.0**-24  # bfloat16 (worst of tf32/bf16) or float32


class _State:
    """The rows, their squared norms, and each row's distance to the selected set (-1 once selected).

    On CPU a transposed copy (d x N) is kept for the matrix-vector products: MKL reads it twice as fast
    as the row-major matrix; on CUDA the row-major matrix serves both."""

    def __init__(self, X: torch.Tensor, chunk_size: int | None) -> None:
        self.X = X
        self.n, self.d = X.shape
        self.XT = X.T.contiguous() if X.device.type == "cpu" else X.T
        self.chunk = max(1, int(chunk_size)) if chunk_size else max(_MANY_ROWS, _GATHER_FLOATS // max(1, self.d))
        self.sq = torch.empty(self.n, dtype=torch.float32, device=X.device)
        for a in range(0, self.n, _MANY_ROWS):
            block = X[a : a + _MANY_ROWS]
            self.sq[a : a + _MANY_ROWS] = (block * block).sum(1)
        self.norm = self.sq.sqrt()
        self.kappa = (8 * self.d + 64) * _roundoff(X.device)
        self.dmin = torch.full((self.n,), float("inf"), dtype=torch.float32, device=X.device)

    def rows(self, idx: torch.Tensor | slice) -> torch.Tensor:
        return self.X[idx]

    def mark(self, idx: torch.Tensor) -> None:
        self.dmin[idx] = -1.0

    def update(self, centers: torch.Tensor) -> None:
        """dmin = min(dmin, distance to each of `centers` (row indices)), exactly, block by block: one
        center over row chunks of `chunk_size`, or blocks of at most `_BLOCK_ENTRIES` centers x rows."""
        self.update_vectors(self.rows(centers), self.sq[centers], self.norm[centers])

    def update_vectors(self, C: torch.Tensor, sqC: torch.Tensor | None = None, nC: torch.Tensor | None = None) -> None:
        """`update` with centers given as vectors (rows of another shard: sharded k-center). Their squared
        norms only rule rows out, within the slack, so computing them here changes no distance."""
        if sqC is None or nC is None:
            sqC = (C * C).sum(1)
            nC = sqC.sqrt()
        rows = self.chunk if len(C) == 1 else min(self.chunk, _MANY_ROWS)
        per_block = max(1, _BLOCK_ENTRIES // rows)
        for c0 in range(0, len(C), per_block):
            block = slice(c0, c0 + per_block)
            for a in range(0, self.n, rows):
                self._block(a, min(a + rows, self.n), C[block], sqC[block], nC[block])

    def _block(self, a: int, b: int, C: torch.Tensor, sqC: torch.Tensor, nC: torch.Tensor) -> None:
        dmin = self.dmin[a:b]
        open_rows = dmin >= 0
        if len(C) == 1:
            fast = torch.mm(C, self.XT[:, a:b]).squeeze(0).mul_(-2).add_(self.sq[a:b]).add_(sqC[0])
            slack = (self.norm[a:b] + nC[0]).square_().mul_(self.kappa)
            bound = dmin.clamp(min=0).square_()  # +inf stays +inf
            mask = ~(fast.sub_(slack) > bound)  # NaN (overflow) counts as "may move"
            mask &= open_rows
            rows = mask.nonzero().squeeze(1)
            if len(rows) == 0:
                return
            if 4 * len(rows) > len(mask):
                exact = torch.cdist(self.rows(slice(a, b)), C, compute_mode=_NOMM).squeeze(1)
                dmin.copy_(torch.where(mask, torch.minimum(dmin, exact), dmin))
            else:
                exact = torch.cdist(self.rows(rows + a), C, compute_mode=_NOMM).squeeze(1)
                dmin[rows] = torch.minimum(dmin[rows], exact)
            return
        # centers x rows
        fast = torch.mm(C, self.XT[:, a:b]).mul_(-2).add_(self.sq[None, a:b]).add_(sqC[:, None])
        slack = (self.norm[None, a:b] + nC[:, None]).square_().mul_(self.kappa)
        upper = (fast + slack).amin(0)  # >= the exact min over this block's centers, up to the slack
        bound = torch.minimum(dmin.clamp(min=0).square_(), upper)
        mask = ~(fast.sub_(slack) > bound[None, :])
        mask &= open_rows[None, :]
        pairs = mask.nonzero()
        if len(pairs) == 0:
            return
        if 4 * len(pairs) > mask.numel():
            exact = torch.cdist(C, self.rows(slice(a, b)), compute_mode=_NOMM).masked_fill_(~mask, float("inf"))
            exact = exact.amin(0)
        else:
            exact = torch.full((b - a,), float("inf"), dtype=torch.float32, device=dmin.device)
            step = max(1, _BLOCK_ENTRIES // self.d)
            for p0 in range(0, len(pairs), step):
                cj, ri = pairs[p0 : p0 + step].unbind(1)
                pure = torch.cdist(self.rows(ri + a).unsqueeze(1), C[cj].unsqueeze(1), compute_mode=_NOMM)
                exact.scatter_reduce_(0, ri, pure.view(-1), reduce="amin")
        torch.minimum(dmin, exact, out=dmin)

    def argmax(self) -> int:
        return int(torch.argmax(self.dmin))  # the first of equal maxima: the lowest index


def _as_matrix(X: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """X as a contiguous float32 (N x d) tensor on `device` (no copy when it already is one), checked finite."""
    with warnings.catch_warnings():  # a read-only array (e.g. zero-copy from Arrow) is only ever read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.as_tensor(X, dtype=torch.float32, device=device)
    if tensor.ndim != 2:
        raise InputError(f"embeddings must be a 2-D matrix (rows x dims), got shape {tuple(tensor.shape)}")
    tensor = tensor.contiguous()
    for a in range(0, tensor.shape[0], _MANY_ROWS):
        if not bool(torch.isfinite(tensor[a : a + _MANY_ROWS]).all()):
            raise InputError("embeddings contain NaN or infinite values")
    return tensor


def _selected_indices(selected: Any, n: int) -> np.ndarray:
    if selected is None:
        return np.empty(0, dtype=np.int64)
    if isinstance(selected, torch.Tensor):
        selected = selected.detach().cpu().numpy()
    arr = np.asarray(selected)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise InputError(f"a boolean `selected` mask must have one entry per row ({n}), got {arr.shape}")
        return np.flatnonzero(arr).astype(np.int64)
    arr = arr.astype(np.int64).reshape(-1)
    if len(arr) and (arr.min() < 0 or arr.max() >= n):
        raise InputError(f"selected indices must lie in [0, {n}), got {arr.min()}..{arr.max()}")
    if len(np.unique(arr)) != len(arr):
        raise InputError("selected indices contain duplicates")
    return arr


def kcenter_iter(
    X: np.ndarray | torch.Tensor,
    *,
    selected: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    mode: Mode = "greedy",
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> Iterator[int]:
    """The k-center picks one at a time (row indices), for as long as rows are left: stop when you like
    (a greedy pick's distance update runs only when the next pick is asked for)."""
    if mode not in MODES:
        raise InputError(f"unknown k-center mode {mode!r}: expected one of {list(MODES)}")
    dev = _resolve_device(device)
    matrix = _as_matrix(X, dev)
    n = matrix.shape[0]
    chosen = _selected_indices(selected, n)
    state = _State(matrix, chunk_size)
    centers = torch.as_tensor(chosen, device=dev)
    if len(chosen):
        state.mark(centers)
        state.update(centers)
    left = n - len(chosen)
    if mode == "one-shot":
        # descending, stable: equal distances keep index order; selected rows (-1) come last
        order = torch.sort(state.dmin, descending=True, stable=True).indices[:left]
        yield from order.cpu().tolist()
        return
    for _ in range(left):
        s = state.argmax()
        state.mark(torch.tensor([s], device=dev))
        yield s
        state.update(torch.tensor([s], device=dev))


def kcenter_indices(
    X: np.ndarray | torch.Tensor,
    n_select: int,
    *,
    selected: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    mode: Mode = "greedy",
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """`n_select` new rows of `X` (N x d) by k-center, in pick order (never any of `selected`).

    `selected`: the rows already chosen (indices or a boolean mask); with none, the greedy starts from
    row 0 (every row is infinitely far from an empty set; ties go to the lowest index) and one-shot
    returns rows `0..n_select-1`. DiverseEvol calls this round after round with the growing selection.
    `chunk_size`: rows per distance block (memory only: the picks do not depend on it). `device`:
    default CUDA when available, else CPU.
    """
    if isinstance(n_select, bool) or not isinstance(n_select, int | np.integer) or n_select < 0:
        raise InputError(f"n_select must be a non-negative integer, got {n_select!r}")
    n_rows = int(X.shape[0])
    n_sel = len(_selected_indices(selected, n_rows))
    if n_select > n_rows - n_sel:
        raise BudgetError(f"k-center asked for {n_select:,} new rows but only {n_rows - n_sel:,} are unselected")
    picks = kcenter_iter(X, selected=selected, mode=mode, chunk_size=chunk_size, device=device)
    out = np.fromiter((next(picks) for _ in range(n_select)), dtype=np.int64, count=n_select)
    picks.close()
    return out


# ---------------------------------------------------------------------------------------------------
# The selector
# ---------------------------------------------------------------------------------------------------


def _init_rows(init: int | Sequence[int] | None, seed: int, eligible: np.ndarray, n_pool: int) -> np.ndarray:
    """Pool indices of the starting set. An int draws like `select.random` (the first `init` rows of a
    seeded permutation of the pool that are usable), so `init=m` starts from `random(pool, m, seed)`."""
    if init is None or isinstance(init, int | np.integer) and not isinstance(init, bool):
        m = 1 if init is None else int(init)
        if m < 0:
            raise InputError(f"init must be a non-negative count or a list of row indices, got {init}")
        usable = np.zeros(n_pool, dtype=bool)
        usable[eligible] = True
        permutation = np.random.default_rng(seed).permutation(n_pool)
        order = permutation[usable[permutation]]
        if m > len(order):
            raise BudgetError(f"init asks for {m:,} random rows but only {len(order):,} rows can be selected")
        return order[:m].astype(np.int64)
    rows = np.asarray(list(init), dtype=np.int64).reshape(-1)
    if len(rows) and (rows.min() < 0 or rows.max() >= n_pool):
        raise InputError(f"init indices must lie in [0, {n_pool}), got {rows.min()}..{rows.max()}")
    if len(np.unique(rows)) != len(rows):
        raise InputError("init indices contain duplicates")
    bad = np.setdiff1d(rows, eligible)
    if len(bad):
        raise InputError(f"init rows {bad[:10].tolist()} have no usable embedding (or no token count)")
    return rows


@dataclass(kw_only=True)
class KCenter(BudgetedSelector):
    """k-center selection over the embeddings in `column` (a list of numbers per row).

    The budget counts the starting rows: `init` (`None`: one random row; an int: that many random rows,
    drawn like `Random(budget=init, seed=seed)`, `0` starting from the first usable row; a list: those
    pool indices), then k-center picks (`mode="greedy"` one at a time, or the study's `"one-shot"`) until
    the budget is met. A token budget keeps the longest prefix of (init, picks...) within it. Rows without
    a usable embedding are never selected. The selection carries `order`: pool indices in selection order
    (init first).

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"embedding": [[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [5.0, 0.0]]})
        >>> KCenter(column="embedding", budget=3, init=[0], device="cpu").fit(ds).order.tolist()
        [0, 2, 3]
    """

    method = "kcenter"
    ordered = True

    column: str
    """Embedding column (a list of numbers per row)."""
    init: int | list[int] | None = None
    """Start rows: a count of random rows (default 1), or comma-separated pool indices."""
    seed: int = 0
    """Seed of the random start rows."""
    mode: Mode = "greedy"
    """`greedy`: one row at a time (classic k-center); `one-shot`: the study's n farthest at once."""
    metric: str = "euclidean"
    """Distance (k-center supports `euclidean`)."""
    chunk_size: int | None = unrecorded(None)
    """Rows per distance block (memory bound; never changes a pick)."""
    device: str | None = None
    """Torch device (default: CUDA when available)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.metric != "euclidean":
            raise InputError(f"unknown metric {self.metric!r}: k-center supports 'euclidean'")
        if self.mode not in MODES:
            raise InputError(f"unknown k-center mode {self.mode!r}: expected one of {list(MODES)}")

    def pick(self, pool: Dataset, budget: Budget, tokens: np.ndarray | None) -> Picked:
        X, rows = embedding_matrix(pool, self.column)
        if budget.kind == "tokens":
            keep = ~np.isnan(tokens[rows])  # type: ignore[index]
            X, rows = X[keep], rows[keep]
        dev = _resolve_device(self.device)

        def picks(start: np.ndarray) -> Iterator[int]:
            position = np.full(len(pool), -1, dtype=np.int64)
            position[rows] = np.arange(len(rows))
            kwargs = {"selected": position[start], "mode": self.mode, "chunk_size": self.chunk_size, "device": dev}
            return (int(rows[local]) for local in kcenter_iter(X, **kwargs))

        return self.pick_from(rows, picks, budget, tokens, n_pool=len(pool), device=dev.type)

    def pick_from(
        self,
        rows: np.ndarray,
        picks: Callable[[np.ndarray], Iterator[int]],
        budget: Budget,
        tokens: np.ndarray | None,
        *,
        n_pool: int,
        device: str,
    ) -> Picked:
        """The budgeted picks: `rows` are the pool indices that can be selected (ascending), `picks(start)`
        the k-center picks (pool indices) from the start rows (sharded k-center gives its own)."""
        start = _init_rows(self.init, self.seed, rows, n_pool)
        what = "rows with a usable embedding"
        if budget.kind == "tokens":
            budget.check(len(rows), n_pool=n_pool, tokens=float(np.sum(tokens[rows])), what=what)  # type: ignore[index]
            order = list(start.tolist())
            used = float(np.sum(tokens[start]))  # type: ignore[index]
            if used <= budget.value:
                for row in picks(start):
                    order.append(row)
                    used += float(tokens[row])  # type: ignore[index]
                    if used > budget.value:
                        break
            order_arr = np.array(order, dtype=np.int64)
        else:
            n = budget.check(len(rows), n_pool=n_pool, what=what)
            if n < len(start):
                raise BudgetError(f"budget of {n:,} rows is smaller than the {len(start):,} init rows")
            new = np.fromiter(itertools.islice(picks(start), n - len(start)), dtype=np.int64, count=n - len(start))
            order_arr = np.concatenate([start, new]).astype(np.int64)
        chosen = budget.cut(order_arr, n_pool=n_pool, tokens=tokens, what=what)
        if len(chosen) < len(start):
            raise BudgetError(f"budget of {budget.describe()} does not cover the {len(start):,} init rows")
        init = self.init if self.init is None or isinstance(self.init, int | np.integer) else "indices"
        return Picked(chosen, {"init": init, "init_rows": start.tolist(), "device": device})

    def parameters(self, details: dict[str, Any]) -> dict[str, Any]:
        return {"column": self.column, "mode": self.mode, "metric": self.metric, **details}

    @classmethod
    def arguments_from_record(cls, record: Any) -> dict[str, Any]:
        arguments = super().arguments_from_record(record)
        params = record.parameters or {}
        if params.get("init") == "indices":
            arguments["init"] = list(params.get("init_rows") or [])
        return arguments


def kcenter_greedy(
    pool: Dataset,
    column: str,
    budget: BudgetSpec,
    *,
    init: int | Sequence[int] | None = None,
    seed: int = 0,
    mode: Mode = "greedy",
    metric: str = "euclidean",
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Any = None,
) -> Selection:
    """`KCenter(...).fit(pool)`: k-center selection over the embeddings in `column`, from `init`."""
    if init is not None and not isinstance(init, int | np.integer):
        init = [int(i) for i in init]
    selector = KCenter(
        column=column, budget=budget, init=init, seed=seed, mode=mode, metric=metric, chunk_size=chunk_size,
        device=None if device is None else str(device), token_column=token_column,
    )  # fmt: skip
    return selector.fit(pool, source=source, scorers=scorers)
