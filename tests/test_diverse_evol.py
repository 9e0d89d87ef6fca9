"""DiverseEvol: the schedule, the training step's inputs, determinism, and the default steps on the
tiny model (CPU)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_select import BudgetError, InputError
from hf_select.select.diverse_evol import MeanHiddenEmbed, SFTTrainStep, diverse_evol, sft_examples
from hf_select.select.kcenter import kcenter_indices

TOPICS = ["the sea", "Paris", "prime numbers", "gradient descent", "a fox", "coffee", "zebras", "SQL", "tokens"]


def pool(n: int = 30, bad: tuple[int, ...] = ()) -> Dataset:
    conversations = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        turns = [{"from": "human", "value": f"Tell me about {topic} ({i})."}]
        if i not in bad:
            turns.append({"from": "gpt", "value": f"{topic.capitalize()} is interesting. " * (1 + i % 4)})
        conversations.append(turns)
    return Dataset.from_dict({"id": list(range(n)), "conversations": conversations})


class RecordingTrain:
    """Records the ids it is trained on; the state counts the rounds."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, state: Any, rows: Dataset) -> int:
        self.calls.append(list(rows["id"]))
        return (state or 0) + 1


def fixed_embed(dim: int = 5, nan_rows: tuple[int, ...] = ()) -> Any:
    def embed(state: int, ds: Dataset) -> np.ndarray:
        X = np.random.default_rng(100 + state).standard_normal((len(ds), dim)).astype(np.float32)
        X[list(nan_rows)] = np.nan
        return X

    return embed


@pytest.mark.parametrize("mode", ["one-shot", "greedy"])
def test_each_round_trains_on_the_selection_and_adds_n_query_kcenter_rows(mode: str) -> None:
    ds = pool(40)
    train = RecordingTrain()
    embed = fixed_embed()
    sel = diverse_evol(ds, init=5, n_query=4, rounds=3, seed=7, train_step=train, embed=embed, mode=mode)
    assert len(sel) == 5 + 3 * 4 and len(set(sel.indices.tolist())) == len(sel)
    order = sel.order.tolist()
    assert sorted(order) == sel.indices.tolist()
    init = np.random.default_rng(7).permutation(40)[:5].tolist()
    assert order[:5] == init == sel.record.parameters["init_rows"]
    details = sel.record.parameters["round_details"]
    assert [d["round"] for d in details] == [1, 2, 3]
    selected = list(init)
    for r, detail in enumerate(details):
        assert train.calls[r] == sorted(selected)  # exactly the rows selected so far, in pool order
        assert detail["trained_on"] == len(selected) and len(detail["picks"]) == 4
        X = embed(r + 1, ds)
        assert detail["picks"] == kcenter_indices(X, 4, selected=selected, mode=mode).tolist()
        selected += detail["picks"]
    assert order == selected
    assert sel.model_state == 3
    record = sel.record
    assert record.method == "diverseevol" and record.seed == 7 and record.parameters["mode"] == mode
    assert record.budget["requested"] == {"kind": "count", "value": 17}


def test_deterministic_given_the_seed() -> None:
    ds = pool(40)
    runs = [diverse_evol(ds, init=6, n_query=5, rounds=2, seed=s, train_step=RecordingTrain(), embed=fixed_embed())
            for s in (1, 1, 2)]  # fmt: skip
    assert runs[0].order.tolist() == runs[1].order.tolist()
    assert runs[0].record.indices_sha256 == runs[1].record.indices_sha256
    assert runs[0].order.tolist() != runs[2].order.tolist()


def test_rows_without_a_finite_embedding_are_never_picked() -> None:
    ds = pool(20)
    nan_rows = (0, 3, 11)
    sel = diverse_evol(ds, init=2, n_query=5, rounds=3, seed=0, train_step=RecordingTrain(),
                       embed=fixed_embed(nan_rows=nan_rows))  # fmt: skip
    picks = [p for d in sel.record.parameters["round_details"] for p in d["picks"]]
    assert not set(nan_rows) & set(picks) and len(set(picks)) == 15
    assert sel.record.parameters["round_details"][0]["rows_without_embedding"] == 3


def test_schedule_errors() -> None:
    ds = pool(10)
    with pytest.raises(BudgetError, match="2 \\+ 3 x 3 = 11"):
        diverse_evol(ds, init=2, n_query=3, rounds=3, train_step=RecordingTrain(), embed=fixed_embed())
    with pytest.raises(BudgetError, match="finite embedding"):
        diverse_evol(ds, init=2, n_query=4, rounds=2, train_step=RecordingTrain(),
                     embed=fixed_embed(nan_rows=(0, 1, 2, 4, 5)))  # fmt: skip
    with pytest.raises(InputError):
        diverse_evol(ds, init=2, n_query=1, rounds=1, mode="fast", train_step=RecordingTrain(), embed=fixed_embed())
    with pytest.raises(InputError):
        diverse_evol(ds, init=-1, n_query=1, rounds=1, train_step=RecordingTrain(), embed=fixed_embed())
    with pytest.raises(InputError, match="one vector per pool row"):
        diverse_evol(ds, init=2, n_query=1, rounds=1, train_step=RecordingTrain(),
                     embed=lambda state, d: np.zeros((3, 2)))  # fmt: skip


def test_sft_examples_label_every_assistant_turn_only(tiny_model: str) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model)
    conv = [
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello!"},
        {"from": "human", "value": "Name a colour."},
        {"from": "gpt", "value": "Blue."},
    ]
    rows = Dataset.from_dict({"conversations": [conv, conv[:1]]})

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    examples, skipped = sft_examples(rows, tok, template="paper")
    assert skipped == {"no assistant turn": 1} and len(examples) == 1
    eos = tok.eos_token_id
    parts = [(ids("Human: Hi\nAssistant: "), False), (ids("Hello!") + [eos], True),
             (ids("\nHuman: Name a colour.\nAssistant: "), False), (ids("Blue.") + [eos], True)]  # fmt: skip
    assert examples[0]["input_ids"] == [t for p, _ in parts for t in p]
    assert examples[0]["labels"] == [t if target else -100 for p, target in parts for t in p]
    chat, _ = sft_examples(rows, tok, template="chat")
    labelled = tok.decode([t for t in chat[0]["labels"] if t != -100])
    assert labelled == "Hello!<|im_end|>\nBlue.<|im_end|>\n"
    cut, _ = sft_examples(rows, tok, template="chat", max_length=8)
    assert cut == []  # no response token within 8 tokens


def test_default_steps_on_the_tiny_model(tiny_model: str) -> None:
    ds = pool(24, bad=(2, 9))
    base = AutoModelForCausalLM.from_pretrained(tiny_model)

    def run() -> Any:
        train = SFTTrainStep(model=tiny_model, learning_rate=1e-3, batch_size=4, max_length=128)
        embed = MeanHiddenEmbed(tokenizer=tiny_model, max_length=128)
        return diverse_evol(ds, init=4, n_query=3, rounds=2, seed=0, train_step=train, embed=embed)

    first, second = run(), run()
    assert len(first) == 10 and len(set(first.indices.tolist())) == 10
    assert first.order.tolist() == second.order.tolist()
    picks = [p for d in first.record.parameters["round_details"] for p in d["picks"]]
    assert not {2, 9} & set(picks)  # rows that cannot be rendered have no embedding
    trained = first.model_state
    before, after = base.state_dict(), trained.state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the default step did train
    assert first.record.parameters["train_step"]["class"] == "SFTTrainStep"
