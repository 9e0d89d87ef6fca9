"""`template="study"` against the study's own scoring scripts, run on real ShareGPT rows with SmolLM2.

The numbers and token ids come from `tests/fixtures/study_reference.json`, written once by
`tests/fixtures/make_study_reference.py` (a step-by-step re-implementation of the study's scripts, each step
naming its file and lines). The ids are checked without a model; the scores load SmolLM2 (a few seconds of
scoring on 32 short rows).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from hf_select import embedded, study
from hf_select.conversation import RowError, batch_turns, detect_format
from hf_select.encoding import ConversationEncoder
from hf_select.errors import InputError
from hf_select.scorers import CrossEntropyScorer, IFDScorer, SelectITScorer, TokenLengthScorer
from hf_select.tokenizer import load_tokenizer

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "study_reference.json").read_text(encoding="utf-8"))
ROWS = FIXTURE["rows"]
MAX_LENGTHS = FIXTURE["about"]["max_lengths"]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def pool() -> Dataset:
    return Dataset.from_dict({"conversations": [r["conversations"] for r in ROWS]})


@pytest.fixture(scope="module")
def conversations(pool: Dataset) -> list:
    return batch_turns(pool[:], detect_format(pool.column_names))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(embedded.SMOLLM2)


def test_fixture_covers_the_row_kinds() -> None:
    kinds = {r["category"] for r in ROWS}
    assert {"single-turn", "multi-turn", "system-first", "gpt-first"} <= kinds
    assert len(ROWS) >= 24
    rated = [r for r in ROWS if r["selectit"]["status"] == "ok"]
    assert len(rated) >= 24
    assert {"system-first-even", "gpt-first-even", "multi-turn", "single-turn"} <= {r["category"] for r in rated}


def test_study_prompt_has_no_trailing_space_and_no_header_on_other_turns(conversations: list) -> None:
    for row, turns in zip(ROWS, conversations, strict=True):
        prompt = study.render_study_prompt(turns[:-1])
        assert prompt.endswith("\nAssistant:") or turns[-2].role != "user"
        if row["category"].startswith(("gpt-first", "system-first")):
            assert prompt.startswith(row["conversations"][0]["value"].strip()[:20])


@pytest.mark.parametrize("max_length", MAX_LENGTHS)
def test_ce_ids_are_the_scripts(tokenizer, conversations: list, max_length: int) -> None:
    kept, units, errors = study.ce_units(tokenizer, conversations, max_length)
    by_row = dict(zip(kept, units, strict=True))
    for i, row in enumerate(ROWS):
        ref = row["ce"][str(max_length)]
        if ref["status"] != "ok":
            assert i not in by_row and "reaches max_length" in errors[i]
            continue
        ids, spans = by_row[i]
        assert ids == ref["ids"] and spans == [(ref["index"], len(ids))]


@pytest.mark.parametrize("max_length", MAX_LENGTHS)
def test_ifd_text_search_ids_are_the_scripts(tokenizer, conversations: list, max_length: int) -> None:
    kept, cond, direct, errors = study.ifd_text_search_units(tokenizer, conversations, max_length)
    by_row = {i: (c, d) for i, c, d in zip(kept, cond, direct, strict=True)}
    for i, row in enumerate(ROWS):
        ref = row["ifd"][str(max_length)]
        if ref["status"] != "ok":
            assert i not in by_row and errors[i]
            continue
        (cond_ids, cond_span), (direct_ids, direct_span) = by_row[i]
        assert cond_ids == ref["cond_ids"] and cond_span == [(ref["cond_start"], len(cond_ids))]
        assert direct_ids == ref["direct_ids"] and direct_span == [(ref["direct_start"], len(direct_ids))]


def test_selectit_study_ids_are_the_scripts(tokenizer, conversations: list) -> None:
    scorer = SelectITScorer(model=embedded.SMOLLM2, template="study")
    assert scorer.variant == "study" and len(scorer.prompts) == 5
    encoder = ConversationEncoder(tokenizer, scorer.template)
    for row, turns in zip(ROWS, conversations, strict=True):
        if row["selectit"]["status"] != "ok":
            with pytest.raises(RowError, match="odd number"):
                scorer.rating_texts(encoder, turns)
            continue
        texts = scorer.rating_texts(encoder, turns)
        assert [encoder.prefix_ids + ids for ids in encoder._ids(texts)] == row["selectit"]["ids"]


def test_token_length_study_counts_are_the_scripts(pool: Dataset) -> None:
    scored = pool.map(TokenLengthScorer(tokenizer=embedded.SMOLLM2, template="study"), batched=True)
    assert scored["n_tokens_prompt"] == [r["token_length"]["query"] for r in ROWS]
    assert scored["n_tokens_response"] == [r["token_length"]["response"] for r in ROWS]


def test_study_options_refuse_what_the_scripts_never_did() -> None:
    with pytest.raises(InputError, match="last turn"):
        CrossEntropyScorer(model=embedded.SMOLLM2, template="study", turns="all")
    with pytest.raises(InputError, match="template='study'"):
        IFDScorer(model=embedded.SMOLLM2, ifd_response_span="text-search")
    with pytest.raises(InputError, match="ifd_response_span"):
        IFDScorer(model=embedded.SMOLLM2, template="study", ifd_response_span="rfind")
    with pytest.raises(InputError, match="plain text"):
        SelectITScorer(model=embedded.SMOLLM2, template="chat", variant="study")
    with pytest.raises(InputError, match="variant"):
        SelectITScorer(model=embedded.SMOLLM2, variant="paper")
    assert SelectITScorer(model=embedded.SMOLLM2).variant == "spec"


def test_original_selectit_text_is_the_original_scripts(conversations: list) -> None:
    """Blue-Raincoat/SelectIT sentence_level.py L12-27, on the first two turns of each row."""
    lines = (Path(study.__file__).parent / "data" / "selectit_rating_prompts.txt").read_text().splitlines(True)
    scorer = SelectITScorer(model=embedded.SMOLLM2, variant="original")
    for row, turns in zip(ROWS, conversations, strict=True):
        ins, res = row["conversations"][0]["value"], row["conversations"][1]["value"]
        cue = "\nThe answer is: \n"
        expected = [lines[k] + "\n" + "Instruction:" + ins + "\n" + "Response:" + res + cue for k in range(5)]
        assert scorer.rating_texts(None, turns) == expected


def _check(values: list, errors: list, reference: list[dict], key: str) -> int:
    """Every row the script scored equals it to TOLERANCE; every other row is NaN with a reason."""
    matched = 0
    for value, error, ref in zip(values, errors, reference, strict=True):
        if ref["status"] == "ok":
            assert not error, error
            assert abs(value - ref[key]) <= TOLERANCE, (value, ref[key])
            matched += 1
        else:
            assert math.isnan(value) and error
    return matched


@pytest.mark.slow
def test_ce_study_equals_the_script(pool: Dataset) -> None:
    for max_length in MAX_LENGTHS:
        scorer = CrossEntropyScorer(model=embedded.SMOLLM2, template="study", shift=False, max_length=max_length)
        scored = pool.map(scorer, batched=True)
        matched = _check(scored["ce"], scored["ce_error"], [r["ce"][str(max_length)] for r in ROWS], "loss")
        assert matched >= (24 if max_length == 4096 else 8)


@pytest.mark.slow
def test_ifd_study_text_search_equals_the_script(pool: Dataset) -> None:
    for max_length in MAX_LENGTHS:
        scorer = IFDScorer(
            model=embedded.SMOLLM2, template="study", ifd_response_span="text-search", max_length=max_length
        )
        scored = pool.map(scorer, batched=True)
        refs = [r["ifd"][str(max_length)] for r in ROWS]
        for column, key in (("ifd_loss_cond", "loss_cond"), ("ifd_loss_direct", "loss_direct"), ("ifd", "rate")):
            matched = _check(scored[column], scored["ifd_error"], refs, key)
        assert matched >= (24 if max_length == 4096 else 8)


@pytest.mark.slow
def test_ifd_study_exact_span_changes_only_the_span(pool: Dataset, tokenizer) -> None:
    """With the exact span (the default), the conditioned loss is the script's wherever its text search found
    the same span, and the unconditioned loss differs where the script left out the first response token."""
    scored = pool.map(IFDScorer(model=embedded.SMOLLM2, template="study"), batched=True)
    same_cond = skipped_first = 0
    for row, cond, direct in zip(ROWS, scored["ifd_loss_cond"], scored["ifd_loss_direct"], strict=True):
        ref = row["ifd"]["4096"]
        response = tokenizer(row["conversations"][-1]["value"])["input_ids"]
        if ref["cond_ids"][ref["cond_start"] :] == response:
            assert abs(cond - ref["loss_cond"]) <= TOLERANCE
            same_cond += 1
        if ref["direct_ids"][ref["direct_start"] :] != response:
            assert abs(direct - ref["loss_direct"]) > TOLERANCE
            skipped_first += 1
    assert same_cond >= 20 and skipped_first >= 12, (same_cond, skipped_first)


@pytest.mark.slow
def test_selectit_study_equals_the_script(pool: Dataset) -> None:
    scored = pool.map(SelectITScorer(model=embedded.SMOLLM2, template="study"), batched=True)
    matched = _check(scored["selectit"], scored["selectit_error"], [r["selectit"] for r in ROWS], "sentence")
    assert matched >= 24
    spec = pool.select(range(2)).map(SelectITScorer(model=embedded.SMOLLM2), batched=True)
    assert not np.allclose(spec["selectit"], scored["selectit"][:2], atol=TOLERANCE)  # the default is the spec's
