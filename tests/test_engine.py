"""LocalEngine against naive full-logit references on tiny random models in float32.

The references run the model one row at a time (no padding), build the full-vocabulary logits and take
`log_softmax` in float64. The engine pads rows into length-sorted micro-batches and projects only the
hidden states that predict a target: every number must agree anyway, whatever the token budget.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_model import build_tiny_model
from transformers import AutoModelForCausalLM

from hf_select.engine import LocalEngine, TargetNLL, load_engine, micro_batches, resolve_dtype
from hf_select.errors import InputError

TOL = 1e-5
BUDGETS = (1, 64, 10**7)  # 1: one row per forward pass; 10**7: every row in one padded pass


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ref_model(tiny_model: str) -> Any:
    """An independent float32 copy of the tiny Llama, used only by the references."""
    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def engine(tiny_model: str) -> LocalEngine:
    return LocalEngine(tiny_model, dtype="float32", batch_tokens=10**7)


@pytest.fixture(scope="module")
def rows(ref_model: Any) -> list[list[int]]:
    """Random token rows of very different lengths (1 to 70 tokens), seeded."""
    rng = random.Random(0)
    vocab = ref_model.config.vocab_size
    lengths = [5, 1, 70, 2, 33, 33, 12, 48, 3, 20]
    return [[rng.randrange(vocab) for _ in range(n)] for n in lengths]


def _save_with_config(path: Path, tiny_model: str, **extra: Any) -> str:
    """A copy of the tiny Llama whose config.json carries extra keys (which LlamaForCausalLM ignores)."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    config.update(extra)
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


# --- naive references ----------------------------------------------------------------------------------


def full_logprobs(model: Any, ids: list[int]) -> torch.Tensor:
    """[len, vocab] float64 log-probabilities: one row, one forward pass, no padding, full logits."""
    with torch.no_grad():
        logits = model(torch.tensor([ids], dtype=torch.long)).logits[0]
    return torch.log_softmax(logits.double(), dim=-1)


def reference_token_nll(model: Any, ids: list[int], spans: list[tuple[int, int]], shift: bool = True) -> np.ndarray:
    logp = full_logprobs(model, ids)
    out = []
    for start, end in spans:
        for t in range(start, end):
            at = t - 1 if shift else t
            out.append(-logp[at, ids[t]].item())
    return np.array(out, dtype=np.float64)


# --- micro_batches -------------------------------------------------------------------------------------


def test_micro_batches_cover_every_row_once_longest_first_within_budget() -> None:
    rng = random.Random(1)
    cases = [[], [7], [3, 3, 3, 3], [10, 1, 10, 1, 5]]
    cases += [[rng.randint(1, 300) for _ in range(rng.randint(1, 60))] for _ in range(200)]
    for lengths in cases:
        for budget in (1, 7, 64, 500, 4096, 10**9):
            batches = list(micro_batches(lengths, budget))
            flat = [i for batch in batches for i in batch]
            assert sorted(flat) == list(range(len(lengths))), "every row exactly once"
            # longest first, ties in the caller's order
            assert flat == sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
            for batch in batches:
                assert batch, "no empty micro-batch"
                padded = len(batch) * max(lengths[i] for i in batch)
                assert padded <= budget or len(batch) == 1, (lengths, budget, batch)


def test_micro_batches_extremes() -> None:
    lengths = [4, 9, 2, 9, 1]
    assert list(micro_batches(lengths, 1)) == [[1], [3], [0], [2], [4]]  # a row over budget runs alone
    assert list(micro_batches(lengths, 10**6)) == [[1, 3, 0, 2, 4]]
    assert list(micro_batches(lengths, 18)) == [[1, 3], [0, 2, 4]]  # 2 x 9 fits exactly, 3 x 4 <= 18


def test_resolve_dtype() -> None:
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda:0") == torch.bfloat16
    assert resolve_dtype("float16", "cpu") == torch.float16
    with pytest.raises(InputError, match="unknown dtype"):
        resolve_dtype("fp8", "cpu")


# --- nll -----------------------------------------------------------------------------------------------


def _spans_for(rng: random.Random, n: int, shift: bool) -> list[tuple[int, int]]:
    """Zero to three disjoint, sorted spans inside an n-token row (never starting at 0 when shifting)."""
    lo = 1 if shift else 0
    if n <= lo:
        return []
    cuts = sorted(rng.sample(range(lo, n + 1), k=min(n + 1 - lo, 2 * rng.randint(0, 3))))
    return [(cuts[k], cuts[k + 1]) for k in range(0, len(cuts) - 1, 2)]


@pytest.mark.parametrize("shift", [True, False])
def test_nll_matches_full_logit_reference(
    engine: LocalEngine, ref_model: Any, rows: list[list[int]], shift: bool
) -> None:
    rng = random.Random(2)
    units = [(ids, _spans_for(rng, len(ids), shift)) for ids in rows]
    # hand-picked cases: the whole row, the last token only, several spans, an empty span
    units += [
        (rows[2], [(1, len(rows[2]))]),
        (rows[2], [(len(rows[2]) - 1, len(rows[2]))]),
        (rows[4], [(2, 5), (9, 10), (20, 33)]),
        (rows[7], [(10, 10), (11, 13)]),
    ]
    expected = [reference_token_nll(ref_model, ids, spans, shift) for ids, spans in units]
    assert sum(len(e) for e in expected) > 100
    for budget in BUDGETS:
        engine.batch_tokens = budget
        got = engine.nll(units, shift=shift, per_token=True)
        assert len(got) == len(units)
        for (_, spans), stats, ref in zip(units, got, expected, strict=True):
            assert isinstance(stats, TargetNLL)
            assert stats.count == len(ref) == sum(e - s for s, e in spans)
            assert stats.tokens is not None and stats.tokens.shape == ref.shape
            np.testing.assert_allclose(stats.tokens, ref, rtol=0, atol=TOL)
            assert stats.sum == pytest.approx(ref.sum(), abs=TOL * max(1, len(ref)))
            if len(ref):
                assert stats.mean == pytest.approx(ref.mean(), abs=TOL)
            else:
                assert stats.sum == 0 and np.isnan(stats.mean)
    engine.batch_tokens = 10**7


def test_nll_without_per_token_and_in_any_order(engine: LocalEngine, rows: list[list[int]]) -> None:
    units = [(ids, [(1, len(ids))] if len(ids) > 1 else []) for ids in rows]
    base = engine.nll(units)
    assert all(s.tokens is None for s in base)
    order = list(range(len(units)))
    random.Random(3).shuffle(order)
    shuffled = engine.nll([units[i] for i in order])
    for k, i in enumerate(order):
        assert shuffled[k].count == base[i].count
        assert shuffled[k].sum == pytest.approx(base[i].sum, abs=1e-6)
    assert engine.nll([]) == []


@pytest.mark.parametrize(
    "unit",
    [([1, 2, 3], [(0, 2)]), ([1, 2, 3], [(2, 4)]), ([1, 2, 3], [(2, 1)]), ([1, 2, 3], [(-1, 2)])],
)
def test_nll_rejects_spans_that_do_not_fit(engine: LocalEngine, unit: Any) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        engine.nll([([5, 6], [(1, 2)]), unit])


# --- next_token_logprobs -------------------------------------------------------------------------------


def test_next_token_logprobs_matches_last_position(engine: LocalEngine, ref_model: Any, rows: list[list[int]]) -> None:
    candidates = [22, 23, 24, 25, 26, 0, ref_model.config.vocab_size - 1, 22]
    expected = np.stack([full_logprobs(ref_model, ids)[-1, candidates].numpy() for ids in rows])
    for budget in BUDGETS:
        engine.batch_tokens = budget
        got = engine.next_token_logprobs(rows, candidates)
        assert got.shape == (len(rows), len(candidates)) and got.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    engine.batch_tokens = 10**7


# --- models whose logits are transformed ---------------------------------------------------------------


@pytest.mark.parametrize("extra", [{"final_logit_softcapping": 0.01}, {"logit_scale": 4.0}])
def test_check_head_rejects_a_model_that_ignores_its_logit_transform(
    tmp_path: Path, tiny_model: str, extra: dict[str, float]
) -> None:
    """LlamaForCausalLM ignores these config keys, so the engine's head (which applies them) would disagree
    with the model's own logits: the self-check must refuse the model rather than score it wrongly."""
    path = _save_with_config(tmp_path / "ignored", tiny_model, **extra)
    with pytest.raises(InputError, match="transforms its logits"):
        LocalEngine(path, dtype="float32")


def _tiny_transformed_model(path: Path, kind: str) -> str:
    from transformers import CohereConfig, CohereForCausalLM, Gemma2Config, Gemma2ForCausalLM

    common = dict(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind == "gemma2":  # applies tanh soft-capping to its logits
            model = Gemma2ForCausalLM(Gemma2Config(head_dim=16, final_logit_softcapping=0.05, **common))
        else:  # cohere multiplies its logits by logit_scale
            model = CohereForCausalLM(CohereConfig(logit_scale=3.0, **common))
        for p in model.parameters():  # larger weights so that the transform is far from the identity
            p.data.normal_(0, 0.2)
    model.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("kind", ["gemma2", "cohere"])
def test_models_that_transform_their_logits_are_reproduced(tmp_path: Path, kind: str) -> None:
    path = _tiny_transformed_model(tmp_path / kind, kind)
    engine = LocalEngine(path, dtype="float32")
    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    rng = random.Random(4)
    rows = [[rng.randrange(1, 300) for _ in range(n)] for n in (9, 30, 2, 17)]
    units = [(ids, [(1, len(ids))]) for ids in rows]
    expected = [reference_token_nll(ref, ids, spans) for ids, spans in units]
    for budget in (1, 10**6):
        engine.batch_tokens = budget
        for stats, ref_nll in zip(engine.nll(units, per_token=True), expected, strict=True):
            np.testing.assert_allclose(stats.tokens, ref_nll, rtol=0, atol=TOL)
        last = np.stack([full_logprobs(ref, ids)[-1, [5, 6, 7]].numpy() for ids in rows])
        np.testing.assert_allclose(engine.next_token_logprobs(rows, [5, 6, 7]), last, rtol=0, atol=TOL)


# --- loading -------------------------------------------------------------------------------------------


def test_engine_metadata_and_load_engine_cache(tiny_model: str, ref_model: Any) -> None:
    """One engine per model per process; a scorer's budget travels with each call, never mutating the engine."""
    engine = load_engine(tiny_model, dtype="float32")
    assert engine.n_parameters == sum(p.numel() for p in ref_model.parameters())
    assert engine.dtype == torch.float32 and engine.device == "cpu"
    default = engine.batch_tokens
    again = load_engine(tiny_model, dtype="float32")
    assert again is engine
    engine.nll([([1, 2, 3], [(1, 3)])], batch_tokens=2)
    assert engine.batch_tokens == default


def test_unloadable_model_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot load model"):
        LocalEngine(str(tmp_path / "missing"), dtype="float32")


def test_second_seed_gives_a_different_model(tmp_path: Path, tiny_tokenizer: str, tiny_model: str) -> None:
    """Sanity check of the test models themselves: the references are not trivially equal across seeds."""
    other = build_tiny_model(tmp_path / "seed1", tiny_tokenizer, seed=1)
    a = LocalEngine(tiny_model, dtype="float32").next_token_logprobs([[5, 6, 7]], [22, 23])
    b = LocalEngine(other, dtype="float32").next_token_logprobs([[5, 6, 7]], [22, 23])
    assert np.abs(a - b).max() > 1e-3
