"""ZIP's samples in one shared buffer, rendered by forked workers: the same bytes and picks as before."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from hf_select.select import zip_samples
from hf_select.select.zip import SampleBuffer, sample_buffer, sample_bytes, zip_indices


def _pool(n: int) -> Dataset:
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "eta", "θ"]
    rows = []
    for _ in range(n):
        q = " ".join(rng.choice(words, size=int(rng.integers(1, 12))))
        a = " ".join(rng.choice(words, size=int(rng.integers(0, 30))))  # some empty responses: never selected
        rows.append([{"from": "human", "value": q}, {"from": "gpt", "value": a}])
    return Dataset.from_dict({"conversations": rows, "id": [f"r{i}" for i in range(n)]})


@pytest.mark.parametrize("text", ["rendered", "repr"])
@pytest.mark.parametrize("workers", [1, 2])
def test_buffer_holds_the_same_samples(monkeypatch: pytest.MonkeyPatch, text: str, workers: int) -> None:
    monkeypatch.setattr(zip_samples, "_RENDER_ROWS", 37)  # many blocks, out of step with the rows
    pool = _pool(500)
    want = sample_bytes(pool, text)
    got = sample_buffer(pool, text, workers=workers)
    assert len(got) == len(want) and any(w is None for w in want)
    assert [None if g is None else bytes(g) for g in got] == want
    assert got.sizes.tolist() == [0 if w is None else len(w) for w in want]
    assert len(got.data) == sum(len(w) for w in want if w is not None)


def test_picks_from_a_buffer_equal_picks_from_bytes() -> None:
    samples = sample_bytes(_pool(400), "rendered")
    from_list = zip_indices(samples, 30, k1=100, k2=20, k3=7, workers=1)
    from_buffer = zip_indices(SampleBuffer.from_list(samples), 30, k1=100, k2=20, k3=7, workers=2)
    assert from_list.tolist() == from_buffer.tolist()
