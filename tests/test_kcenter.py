"""k-center (`hf_select.select.kcenter`) against brute force: a full pairwise distance matrix and an
explicit Python loop.

Two brute-force distance matrices are used: float64 NumPy on small-integer coordinates (where float32
is exact too, so every tie, duplicate or not, must go to the lowest index exactly as in float64), and
the declared distance itself (`torch.cdist(..., "donot_use_mm_for_euclid_dist")` on the whole matrix)
on random float data, which checks the incremental updates, the matmul-bound filtering and chunking
bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_select.errors import BudgetError, InputError
from hf_select.select import random as random_selector
from hf_select.select.kcenter import embedding_matrix, kcenter_greedy, kcenter_indices, kcenter_iter

NOMM = "donot_use_mm_for_euclid_dist"


# ---------------------------------------------------------------------------------------------------
# Brute force
# ---------------------------------------------------------------------------------------------------


def matrix_float64(X: np.ndarray) -> np.ndarray:
    X64 = X.astype(np.float64)
    return np.sqrt(((X64[:, None, :] - X64[None, :, :]) ** 2).sum(-1))


def matrix_declared(X: np.ndarray) -> np.ndarray:
    t = torch.as_tensor(X, dtype=torch.float32)
    return torch.cdist(t, t, compute_mode=NOMM).numpy()


def brute_greedy(D: np.ndarray, n: int, selected: list[int]) -> list[int]:
    """Each pick recomputes every row's distance to the whole chosen set from the full matrix."""
    chosen = list(selected)
    picks: list[int] = []
    for _ in range(n):
        dist = D[:, chosen].min(axis=1) if chosen else np.full(len(D), np.inf)
        dist[chosen] = -np.inf
        best = int(np.flatnonzero(dist == dist.max())[0])  # ties: the lowest index
        chosen.append(best)
        picks.append(best)
    return picks


def brute_one_shot(D: np.ndarray, n: int, selected: list[int]) -> list[int]:
    dist = {i: min((D[i, j] for j in selected), default=math.inf) for i in range(len(D)) if i not in selected}
    return sorted(dist, key=lambda i: (-dist[i], i))[:n]


def integer_points(seed: int, n: int, d: int, high: int = 4) -> np.ndarray:
    """Small-integer coordinates: exact in float32, with many equal distances and duplicated points."""
    return np.random.default_rng(seed).integers(-high, high + 1, size=(n, d)).astype(np.float32)


def float_points(seed: int, n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32) * rng.uniform(0.1, 50)
    dup_from = rng.integers(0, n, size=n // 8)
    dup_to = rng.integers(0, n, size=n // 8)
    X[dup_to] = X[dup_from]  # exact duplicates, anywhere
    return X


# ---------------------------------------------------------------------------------------------------
# The core against brute force
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("n", "d"), [(60, 1), (120, 2), (150, 3), (90, 8)])
def test_greedy_matches_float64_brute_force_on_integer_points(seed: int, n: int, d: int) -> None:
    X = integer_points(seed, n, d)
    D = matrix_float64(X)
    rng = np.random.default_rng(seed + 100)
    for k0 in (0, 1, 5):
        selected = rng.choice(n, size=k0, replace=False).tolist()
        want = brute_greedy(D, n - k0 if n <= 60 else 40, selected)
        got = kcenter_indices(X, len(want), selected=selected)
        assert got.tolist() == want
        for chunk in (7, 64):
            assert kcenter_indices(X, len(want), selected=selected, chunk_size=chunk).tolist() == want


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("n", "d"), [(200, 2), (150, 16), (120, 384)])
def test_greedy_matches_declared_distance_brute_force(seed: int, n: int, d: int) -> None:
    X = float_points(seed, n, d)
    D = matrix_declared(X)
    for selected in ([], [3], list(range(0, n, 9))):
        want = brute_greedy(D, 60, selected)
        assert kcenter_indices(X, 60, selected=selected).tolist() == want
        assert kcenter_indices(X, 60, selected=selected, chunk_size=13).tolist() == want


@pytest.mark.parametrize("seed", range(3))
def test_one_shot_matches_brute_force(seed: int) -> None:
    X = integer_points(seed, 100, 3)
    D = matrix_float64(X)
    selected = np.random.default_rng(seed).choice(100, size=6, replace=False).tolist()
    want = brute_one_shot(D, 50, selected)
    assert kcenter_indices(X, 50, selected=selected, mode="one-shot").tolist() == want
    assert kcenter_indices(X, 50, selected=selected, mode="one-shot", chunk_size=5).tolist() == want
    Y = float_points(seed, 150, 32)
    sel = list(range(0, 150, 11))
    want = brute_one_shot(matrix_declared(Y), 60, sel)
    assert kcenter_indices(Y, 60, selected=sel, mode="one-shot").tolist() == want
    assert kcenter_indices(Y, 60, selected=sel, mode="one-shot", chunk_size=17).tolist() == want


def test_many_centers_blocks_and_large_chunks_agree() -> None:
    """A large initial set goes through the blocked matmul path; it must agree with one-by-one."""
    X = float_points(7, 3_000, 24)
    selected = list(range(0, 3_000, 4))  # 750 centers at once
    D = matrix_declared(X)
    want_one_shot = brute_one_shot(D, 200, selected)
    assert kcenter_indices(X, 200, selected=selected, mode="one-shot").tolist() == want_one_shot
    want = brute_greedy(D, 25, selected)
    assert kcenter_indices(X, 25, selected=selected).tolist() == want
    assert kcenter_indices(X, 25, selected=selected, chunk_size=100).tolist() == want


def test_lowered_matmul_precision_keeps_picks_exact() -> None:
    X = float_points(3, 300, 64)
    want = brute_greedy(matrix_declared(X), 40, [0])
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        assert kcenter_indices(X, 40, selected=[0]).tolist() == want
    finally:
        torch.set_float32_matmul_precision(previous)


def test_float32_distances_are_close_to_float64() -> None:
    X = float_points(1, 80, 384)
    assert np.allclose(matrix_declared(X), matrix_float64(X), rtol=1e-5, atol=1e-4)


def test_kcenter_indices_arguments() -> None:
    X = integer_points(0, 30, 2)
    assert kcenter_indices(X, 0).tolist() == []
    assert kcenter_indices(X, 3)[0] == 0  # nothing selected: every row is infinitely far; lowest index
    assert kcenter_indices(X, 4, mode="one-shot").tolist() == [0, 1, 2, 3]
    mask = np.zeros(30, dtype=bool)
    mask[[4, 9]] = True
    assert kcenter_indices(X, 5, selected=mask).tolist() == kcenter_indices(X, 5, selected=[4, 9]).tolist()
    assert kcenter_indices(torch.as_tensor(X), 5, selected=torch.tensor([4, 9])).tolist() == (
        kcenter_indices(X, 5, selected=[4, 9]).tolist()
    )
    everything = kcenter_indices(X, 28, selected=[4, 9])
    assert sorted(everything.tolist()) == sorted(set(range(30)) - {4, 9})
    with pytest.raises(BudgetError, match="only 28"):
        kcenter_indices(X, 29, selected=[4, 9])
    with pytest.raises(InputError, match="duplicates"):
        kcenter_indices(X, 2, selected=[4, 4])
    with pytest.raises(InputError, match=r"\[0, 30\)"):
        kcenter_indices(X, 2, selected=[30])
    with pytest.raises(InputError, match="NaN"):
        kcenter_indices(np.array([[0.0, np.nan], [1.0, 1.0]]), 1)
    with pytest.raises(InputError, match="mode"):
        kcenter_indices(X, 1, mode="fast")  # type: ignore[arg-type]
    picks = kcenter_iter(X, selected=[0])
    assert [next(picks) for _ in range(3)] == kcenter_indices(X, 3, selected=[0]).tolist()


# ---------------------------------------------------------------------------------------------------
# The selector on a Dataset
# ---------------------------------------------------------------------------------------------------


def embedding_pool(X: np.ndarray, **extra: list[Any]) -> Dataset:
    return Dataset.from_dict({"embedding": [row.tolist() for row in X], **extra})


def test_selector_matches_brute_force_with_random_init() -> None:
    X = float_points(5, 160, 12)
    pool = embedding_pool(X)
    D = matrix_declared(X)
    for init, seed in ((None, 0), (1, 3), (5, 1)):
        sel = kcenter_greedy(pool, "embedding", 40, init=init, seed=seed)
        start = np.random.default_rng(seed).permutation(160)[: 1 if init is None else init].tolist()
        assert sel.order.tolist()[: len(start)] == start
        assert sel.order.tolist() == start + brute_greedy(D, 40 - len(start), start)
        assert sel.indices.tolist() == sorted(sel.order.tolist())
        again = kcenter_greedy(pool, "embedding", 40, init=init, seed=seed)
        assert again.order.tolist() == sel.order.tolist()
    assert kcenter_greedy(pool, "embedding", 40, seed=1).order.tolist() != sel.order.tolist()
    one_shot = kcenter_greedy(pool, "embedding", 40, init=5, seed=1, mode="one-shot")
    start = one_shot.order.tolist()[:5]
    assert one_shot.order.tolist() == start + brute_one_shot(D, 35, start)


def test_init_count_draws_like_the_random_selector() -> None:
    X = float_points(2, 90, 4)
    pool = embedding_pool(X)
    sel = kcenter_greedy(pool, "embedding", 20, init=7, seed=11)
    assert sorted(sel.order.tolist()[:7]) == random_selector(pool, 7, seed=11).indices.tolist()


def test_given_init_and_budgets() -> None:
    X = integer_points(4, 100, 3)
    pool = embedding_pool(X, n_tokens=[float(10 + i % 13) for i in range(100)])
    D = matrix_float64(X)
    sel = kcenter_greedy(pool, "embedding", 0.25, init=[42, 7])
    assert len(sel) == 25
    assert sel.order.tolist() == [42, 7, *brute_greedy(D, 23, [42, 7])]
    full = [42, 7, *brute_greedy(D, 98, [42, 7])]
    tokens = pool["n_tokens"]
    for budget in (100, 257, 1000):
        kept, total = [], 0.0
        for i in full:
            if total + tokens[i] > budget:
                break
            kept.append(i)
            total += tokens[i]
        got = kcenter_greedy(pool, "embedding", f"{budget} tokens", init=[42, 7])
        assert got.order.tolist() == kept
        assert got.record.kept["tokens"] == int(total)
    with pytest.raises(BudgetError, match="init rows"):
        kcenter_greedy(pool, "embedding", 1, init=[42, 7])
    with pytest.raises(BudgetError, match="init rows"):
        kcenter_greedy(pool, "embedding", "15 tokens", init=[42, 7])
    with pytest.raises(BudgetError, match="exceeds"):
        kcenter_greedy(pool, "embedding", 101)
    with pytest.raises(BudgetError, match="exceeds"):
        kcenter_greedy(pool, "embedding", "1M tokens")
    with pytest.raises(InputError, match="init indices"):
        kcenter_greedy(pool, "embedding", 10, init=[100])
    with pytest.raises(InputError, match="n_tokens"):
        kcenter_greedy(embedding_pool(X), "embedding", "100 tokens")


def test_unusable_embeddings_are_never_selected() -> None:
    X = float_points(9, 40, 3)
    rows: list[Any] = [row.tolist() for row in X]
    rows[3] = None
    rows[8] = [1.0, float("nan"), 2.0]
    rows[9] = [1.0, None, 2.0]
    pool = Dataset.from_dict({"embedding": rows})
    matrix, kept = embedding_matrix(pool, "embedding")
    assert kept.tolist() == [i for i in range(40) if i not in (3, 8, 9)]
    assert matrix.dtype == np.float32 and matrix.shape == (37, 3)
    sel = kcenter_greedy(pool, "embedding", 37)
    assert set(sel.indices.tolist()) == set(kept.tolist())
    with pytest.raises(InputError, match="no usable embedding"):
        kcenter_greedy(pool, "embedding", 5, init=[3])
    with pytest.raises(BudgetError, match="37 rows with a usable embedding"):
        kcenter_greedy(pool, "embedding", 38)


def test_embedding_column_checks() -> None:
    with pytest.raises(InputError, match="different lengths"):
        embedding_matrix(Dataset.from_dict({"e": [[1.0, 2.0], [1.0]]}), "e")
    with pytest.raises(InputError, match="not a list"):
        embedding_matrix(Dataset.from_dict({"e": [1.0, 2.0]}), "e")
    with pytest.raises(InputError, match="not in the dataset"):
        embedding_matrix(Dataset.from_dict({"e": [[1.0]]}), "x")
    fixed = Dataset.from_dict({"e": [[1, 2], [3, 4]]}).cast_column("e", __import__("datasets").Sequence(
        __import__("datasets").Value("int32"), length=2))  # fmt: skip
    matrix, kept = embedding_matrix(fixed, "e")
    assert matrix.tolist() == [[1.0, 2.0], [3.0, 4.0]] and kept.tolist() == [0, 1]


def test_record_and_arguments() -> None:
    pool = embedding_pool(float_points(0, 50, 4))
    sel = kcenter_greedy(pool, "embedding", 10, init=3, seed=5, mode="one-shot")
    rec = sel.record
    assert rec.method == "kcenter" and rec.seed == 5
    assert rec.parameters["mode"] == "one-shot" and rec.parameters["init"] == 3
    assert rec.parameters["init_rows"] == sel.order.tolist()[:3]
    assert rec.parameters["device"] == "cpu"
    assert rec.kept["rows"] == 10 and rec.budget["requested"] == {"kind": "count", "value": 10}
    with pytest.raises(InputError, match="metric"):
        kcenter_greedy(pool, "embedding", 10, metric="cosine")
    with pytest.raises(InputError, match="mode"):
        kcenter_greedy(pool, "embedding", 10, mode="lazy")  # type: ignore[arg-type]
