"""The LESS scorer against a naive reference written here from METHODS.md ("LESS"): one row at a time, one
backward pass per row and checkpoint, explicit cosines with every target row. Warm-up folders are built by
hand (`less_warmup.build_warmup`): random non-zero LoRA weights and Adam moments on the tiny Llama."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk
from less_warmup import build_warmup

from hf_select.cli import main
from hf_select.conversation import Turn
from hf_select.encoding import ConversationEncoder, encode_segments, render_segments
from hf_select.errors import InputError
from hf_select.less.checkpoints import checkpoint_weights, load_checkpoints
from hf_select.less.projection import RademacherProjection
from hf_select.scorers import LESSScorer
from hf_select.tokenizer import load_tokenizer

PROMPTS = ["What is the capital of France?", "Write a poem about the sea.", "List three primes over 100.",
           "Explain gradient descent.", "Translate good morning.", "Summarise the paragraph.", "Say hi.",
           "What is 2+2?", "Name a colour.", "Count to five."]  # fmt: skip
RESPONSES = ["Paris.", "The sea rolls in with silver light, it hums a song into the night.", "101, 103 and 107.",
             "Take a small step downhill, and repeat.", "buenos dias", "Random selection is hard to beat.",
             "Hello!", "4", "Blue, like the sky on a clear summer day.", "1 2 3 4 5"]  # fmt: skip


@pytest.fixture(scope="module")
def warmup(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_warmup(tmp_path_factory.mktemp("warmup"), tiny_model, epochs=2, r=4, sample_indices=[0, 3],
                        learning_rates=[2e-5, 1e-5], max_length=128)  # fmt: skip


@pytest.fixture(scope="module")
def pool() -> Dataset:
    return Dataset.from_dict({"prompt": PROMPTS, "response": RESPONSES})


def _units(model_path: str, rows: list[tuple[str, str]]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    encoder = ConversationEncoder(load_tokenizer(model_path), "chat")
    segments = [render_segments(encoder, [Turn("user", p), Turn("assistant", r)], "last") for p, r in rows]
    return encode_segments(encoder, segments)


def _gradient(model: torch.nn.Module, names: list[str], ids: list[int], spans: list) -> torch.Tensor:
    """One row alone: the mean NLL of its response tokens, one backward pass, the LoRA weights' `.grad`."""
    model.zero_grad()
    logits = model(input_ids=torch.tensor([ids])).logits[0]
    targets = [t for s, e in spans for t in range(s, e)]
    logp = torch.log_softmax(logits[[t - 1 for t in targets]], dim=-1)
    (-logp[range(len(targets)), [ids[t] for t in targets]].mean()).backward()
    params = dict(model.named_parameters())
    return torch.cat([params[n].grad.reshape(-1).double() for n in names])


def naive_less(warmup: Path, model_path: str, pool_rows: list, target_sets: list[list], dense=None) -> list[float]:
    """METHODS.md, literally: for each pool row z, max over target sets of
    sum_i w_i mean_v cos(P(adam_i(g_i(z))), P(g_i(v))), with P the dense projection matrix (or none)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    checkpoints = load_checkpoints(warmup)
    weights = checkpoint_weights(checkpoints)
    pool_units = _units(model_path, pool_rows)
    set_units = [_units(model_path, rows) for rows in target_sets]
    scores = np.zeros((len(pool_rows), len(target_sets)))
    for w, ckpt in zip(weights, checkpoints, strict=True):
        base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, str(ckpt.path), is_trainable=True).eval()
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        adam = ckpt.adam_state()
        m = torch.cat([adam[n][0].reshape(-1).double() for n in names])
        v = torch.cat([adam[n][1].reshape(-1).double() for n in names])

        def project(x: torch.Tensor) -> torch.Tensor:
            return x if dense is None else x @ dense.double()

        target_grads = [[project(_gradient(model, names, *u)) for u in units] for units in set_units]
        for z, (ids, spans) in enumerate(pool_units):
            g = _gradient(model, names, ids, spans)
            pre = project((0.9 * m + 0.1 * g) / torch.sqrt(0.999 * v + 0.001 * g * g + 1e-8))
            for s, grads in enumerate(target_grads):
                cosines = [torch.nn.functional.cosine_similarity(pre, t, dim=0) for t in grads]
                scores[z, s] += w * float(torch.stack(cosines).mean())
    return scores.max(axis=1).tolist()


def test_exact_score_equals_the_naive_reference(warmup: Path, tiny_model: str, pool: Dataset, tmp_path: Path) -> None:
    """In-pool targets: a seeded sample outside the warm-up's sample; exact scores to 1e-6."""
    scorer = LESSScorer(warmup=str(warmup), n_targets=3, target_seed=1, cache_dir=str(tmp_path))
    targets = scorer.target_sample(len(pool))
    assert len(targets) == 3 and not {0, 3} & set(targets)
    scored = scorer.map(pool, batch_size=4, progress=False)
    rows = list(zip(PROMPTS, RESPONSES, strict=True))
    expected = naive_less(warmup, tiny_model, rows, [[rows[i] for i in targets]])
    np.testing.assert_allclose(scored["less"], expected, rtol=0, atol=1e-6)
    assert not any(scored["less_error"])
    assert np.std(expected) > 1e-3  # the scores tell rows apart


def test_validation_sets_take_the_max_over_sets(warmup: Path, tiny_model: str, tmp_path: Path) -> None:
    """Two validation sets on disk (their own format): each row's score is its best set's, as LESS."""
    sets = [[(PROMPTS[0], RESPONSES[0]), (PROMPTS[1], RESPONSES[1])], [(PROMPTS[6], RESPONSES[6])]]
    paths = []
    for k, rows in enumerate(sets):
        path = tmp_path / f"val{k}.jsonl"
        path.write_text("".join(json.dumps({"instruction": p, "output": r}) + "\n" for p, r in rows))
        paths.append(str(path))
    pool_rows = list(zip(PROMPTS[5:], RESPONSES[5:], strict=True))
    pool = Dataset.from_dict({"prompt": PROMPTS[5:], "response": RESPONSES[5:]})
    scorer = LESSScorer(warmup=str(warmup), targets=tuple(paths), cache_dir=str(tmp_path / "cache"))
    scored = pool.map(scorer, batched=True)  # validation sets need no pool: plain map works
    expected = naive_less(warmup, tiny_model, pool_rows, sets)
    np.testing.assert_allclose(scored["less"], expected, rtol=0, atol=1e-6)
    per_set = [naive_less(warmup, tiny_model, pool_rows, [s]) for s in sets]
    np.testing.assert_allclose(expected, np.max(per_set, axis=0), atol=1e-12)
    assert not np.allclose(per_set[0], per_set[1], atol=1e-3)  # the sets differ, so the max matters


def test_rademacher_projection_equals_a_dense_matrix(
    warmup: Path, tiny_model: str, pool: Dataset, tmp_path: Path
) -> None:
    scorer = LESSScorer(warmup=str(warmup), n_targets=3, projection="rademacher", proj_dim=32, proj_seed=5,
                        cache_dir=str(tmp_path), store=str(tmp_path / "store"))  # fmt: skip
    scored = scorer.map(pool, batch_size=5, progress=False)
    rows = list(zip(PROMPTS, RESPONSES, strict=True))
    targets = [rows[i] for i in scorer.target_sample(len(pool))]
    dim = sum(p.numel() for p in __import__("safetensors.torch").torch.load_file(
        str(load_checkpoints(warmup)[0].path / "adapter_model.safetensors")).values())  # fmt: skip
    dense = RademacherProjection(dim, 32, 5).dense()
    expected = naive_less(warmup, tiny_model, rows, [targets], dense=dense)
    np.testing.assert_allclose(scored["less"], expected, rtol=0, atol=1e-5)
    exact = LESSScorer(warmup=str(warmup), n_targets=3, cache_dir=str(tmp_path)).map(pool, progress=False)
    assert not np.allclose(scored["less"], exact["less"], atol=1e-3)  # the projection did change something
    from safetensors.torch import load_file

    stored = [load_file(str(f)) for f in sorted((tmp_path / "store" / "epoch-1").iterdir())]
    assert sorted(int(r) for s in stored for r in s["rows"]) == list(range(len(pool)))
    assert {tuple(s["vectors"].shape[1:]) for s in stored} == {(32,)}


def test_order_batch_size_and_num_proc_do_not_change_a_score(warmup: Path, pool: Dataset, tmp_path: Path) -> None:
    scorer = LESSScorer(warmup=str(warmup), n_targets=4, cache_dir=str(tmp_path))
    base = np.array(scorer.map(pool, batch_size=10, progress=False)["less"])
    small = np.array(LESSScorer(warmup=str(warmup), n_targets=4, cache_dir=str(tmp_path), batch_tokens=40)
                     .map(pool, batch_size=3, progress=False)["less"])  # fmt: skip
    np.testing.assert_allclose(small, base, rtol=0, atol=1e-6)
    order = np.random.default_rng(0).permutation(len(pool))
    shuffled = pool.select(order)
    # The targets are pool rows: give the shuffled pool the same targets by scoring against the same cache.
    scorer.prepare_targets(pool)
    reordered = np.array(shuffled.map(scorer, batched=True, batch_size=4)["less"])
    np.testing.assert_allclose(reordered, base[order], rtol=0, atol=1e-6)
    workers = np.array(scorer.map(pool, num_proc=2, batch_size=3, progress=False)["less"])
    np.testing.assert_allclose(workers, base, rtol=0, atol=1e-6)


def test_workers_read_the_cached_targets_instead_of_computing_them(warmup: Path, pool: Dataset, tmp_path: Path) -> None:
    """Target means come from the cache file written before `map` starts: negate it and every score flips."""
    from safetensors.torch import load_file, save_file

    scorer = LESSScorer(warmup=str(warmup), n_targets=3, cache_dir=str(tmp_path))
    path = scorer.prepare_targets(pool)
    first = np.array(pool.map(scorer, batched=True)["less"])
    save_file({"means": -load_file(str(path))["means"]}, str(path))
    again = LESSScorer(warmup=str(warmup), n_targets=3, cache_dir=str(tmp_path))
    assert again.prepare_targets(pool) == path  # same key: found, not recomputed
    flipped = np.array(pool.map(again, batched=True, num_proc=2, new_fingerprint="flipped")["less"])
    np.testing.assert_allclose(flipped, -first, atol=1e-6)


def test_a_missing_or_empty_warmup_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing; is .* a LESS warm-up folder"):
        LESSScorer(warmup=str(tmp_path))
    (tmp_path / "warmup.json").write_text(json.dumps({"model": "m"}))
    with pytest.raises(InputError, match="no complete checkpoint"):
        LESSScorer(warmup=str(tmp_path))


def test_in_pool_targets_need_the_pool(warmup: Path, pool: Dataset) -> None:
    with pytest.raises(InputError, match="in-pool targets"):
        pool.map(LESSScorer(warmup=str(warmup)), batched=True)


def test_bad_rows_get_nan_and_a_reason(warmup: Path, tmp_path: Path) -> None:
    rows = Dataset.from_dict({"prompt": ["Say hi.", "word " * 300, None, "Name a colour.", "Hi", "2+2?"],
                              "response": ["Hello!", "ok", "fine", "Blue.", "Hello.", "4"]})  # fmt: skip
    scored = LESSScorer(warmup=str(warmup), n_targets=4, cache_dir=str(tmp_path)).map(rows, progress=False)
    less, errors = scored["less"], scored["less_error"]
    assert np.isfinite(less[0]) and np.isfinite(less[3]) and not errors[0] and not errors[3]
    assert np.isnan(less[1]) and "max_length" in errors[1]
    assert np.isnan(less[2]) and "non-string" in errors[2]
    with pytest.raises(InputError, match="no row of the in-pool target sample can be scored"):
        LESSScorer(warmup=str(warmup), n_targets=2, cache_dir=str(tmp_path)).map(rows.select(range(4)), progress=False)


def test_fingerprint_follows_what_changes_scores(warmup: Path, tmp_path: Path) -> None:
    import shutil

    base = LESSScorer(warmup=str(warmup))
    assert base.fingerprint() == LESSScorer(warmup=str(warmup), batch_tokens=99, cache_dir="x").fingerprint()
    changes = [{"projection": "rademacher"}, {"proj_seed": 1}, {"n_targets": 7}, {"target_seed": 2}, {"max_length": 64}]
    for change in changes:
        assert LESSScorer(warmup=str(warmup), **change).fingerprint() != base.fingerprint(), change
    copy = tmp_path / "copy"
    shutil.copytree(warmup, copy)
    assert LESSScorer(warmup=str(copy)).fingerprint() != base.fingerprint()  # the path is configuration
    same_path = LESSScorer(warmup=str(copy)).fingerprint()
    info = copy / "epoch-2" / "checkpoint.json"
    info.write_text(info.read_text().replace('"learning_rate": 1e-05', '"learning_rate": 3e-05'))
    assert LESSScorer(warmup=str(copy)).fingerprint() != same_path  # and so is its content


def test_cli_scores_with_a_warmup(warmup: Path, pool: Dataset, tmp_path: Path) -> None:
    pool.to_json(tmp_path / "pool.jsonl")
    out = tmp_path / "scored"
    argv = ["score", str(tmp_path / "pool.jsonl"), "--method", "less", "--warmup", str(warmup), "--n-targets", "3",
            "--cache-dir", str(tmp_path / "cache"), "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    scored = load_from_disk(str(out))
    assert np.isfinite(scored["less"]).all()
    expected = LESSScorer(warmup=str(warmup), n_targets=3, cache_dir=str(tmp_path / "c2")).map(pool, progress=False)
    np.testing.assert_allclose(scored["less"], expected["less"], atol=1e-6)
