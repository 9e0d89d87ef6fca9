"""LESS's batched per-row LoRA gradients and its seeded Rademacher projection, against plain references."""

from __future__ import annotations

import hashlib

import pytest
import torch

from hf_select.less.gradients import LoRAGradients, adam_precondition, lora_parameter_names
from hf_select.less.projection import BLOCK, RademacherProjection


def _lora_model(tiny_model: str, attn: str, seed: int = 0) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation=attn)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, lora_dropout=0.1,
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in model.named_parameters():
            if param.requires_grad:  # lora_B non-zero, else every lora_A gradient is zero
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return model.eval()


def _one_row_gradient(model: torch.nn.Module, ids: list[int], spans: list[tuple[int, int]]) -> torch.Tensor:
    """The reference: one backward pass of the row alone, its mean response NLL, read from `.grad`."""
    model.zero_grad()
    logits = model(input_ids=torch.tensor([ids])).logits[0]
    targets = [t for s, e in spans for t in range(s, e)]
    logp = torch.log_softmax(logits[[t - 1 for t in targets]], dim=-1)
    loss = -logp[range(len(targets)), [ids[t] for t in targets]].mean()
    loss.backward()
    params = dict(model.named_parameters())
    return torch.cat([params[n].grad.reshape(-1) for n in lora_parameter_names(model)])


def _rows(vocab: int, seed: int = 1) -> list[tuple[list[int], list[tuple[int, int]]]]:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for length, spans in [(7, [(4, 7)]), (19, [(5, 12), (15, 19)]), (3, [(1, 3)]), (12, [(11, 12)]), (16, [(2, 16)])]:
        rows.append((torch.randint(5, vocab, (length,), generator=generator).tolist(), spans))
    return rows


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_batched_per_row_gradients_equal_one_backward_per_row(tiny_model: str, attn: str) -> None:
    """Mixed lengths, right padding, several spans per row: each row's batched gradient is its own
    one-row backward, for A and B weights alike (lora_B non-zero)."""
    model = _lora_model(tiny_model, attn)
    rows = _rows(model.config.vocab_size)
    batched = LoRAGradients(model).per_row(rows)
    names = lora_parameter_names(model)
    assert any(".lora_A." in n for n in names) and any(".lora_B." in n for n in names)
    for r, (ids, spans) in enumerate(rows):
        reference = _one_row_gradient(model, ids, spans)
        assert reference.abs().max() > 0
        error = (batched[r] - reference).norm() / reference.norm()
        assert error < 1e-5, (attn, r, float(error))
        pieces = zip(names, _split(batched[r], model), strict=True)
        a_part = torch.cat([g.reshape(-1) for n, g in pieces if "lora_A" in n])
        assert a_part.abs().max() > 0  # lora_A's gradient is checked for real


def _split(flat: torch.Tensor, model: torch.nn.Module) -> list[torch.Tensor]:
    sizes = [p.numel() for n, p in model.named_parameters() if n in set(lora_parameter_names(model))]
    return list(torch.split(flat, sizes))


def test_row_gradient_does_not_depend_on_its_batch(tiny_model: str) -> None:
    """A row's gradient is the same alone, first or last in a batch, next to longer or shorter rows."""
    model = _lora_model(tiny_model, "sdpa")
    grads = LoRAGradients(model)
    rows = _rows(model.config.vocab_size)
    together = grads.per_row(rows)
    backwards = grads.per_row(rows[::-1]).flip(0)
    alone = torch.cat([grads.per_row([row]) for row in rows])
    for other in (backwards, alone):
        assert ((together - other).norm(dim=1) / together.norm(dim=1)).max() < 1e-5


def test_adam_preconditioning_follows_the_reference_formula() -> None:
    g = torch.tensor([[0.5, -2.0, 0.0]])
    m, v = torch.tensor([0.1, 0.2, -0.3]), torch.tensor([0.01, 0.0, 0.04])
    expected = [(0.9 * m[i] + 0.1 * g[0, i]) / (0.999 * v[i] + 0.001 * g[0, i] ** 2 + 1e-8) ** 0.5 for i in range(3)]
    torch.testing.assert_close(adam_precondition(g, m, v)[0], torch.stack(expected))


def test_rademacher_projection_equals_the_documented_dense_matrix() -> None:
    """The matrix is built here from its documented recipe (one seeded generator per block of rows), and
    the blockwise projection equals x @ R, whatever rows are projected together."""
    dim_in, d, seed = BLOCK * 2 + 123, 64, 7
    blocks = []
    for k, lo in enumerate(range(0, dim_in, BLOCK)):
        rows = min(BLOCK, dim_in - lo)
        block_seed = int.from_bytes(hashlib.sha256(f"{seed}/{k}".encode()).digest()[:4], "little")
        generator = torch.Generator().manual_seed(block_seed)
        blocks.append(torch.randint(0, 2, (rows, d), generator=generator, dtype=torch.int8).float() * 2 - 1)
    dense = torch.cat(blocks)
    assert set(dense.unique().tolist()) == {-1.0, 1.0}
    x = torch.randn(5, dim_in, dtype=torch.float64).float()
    projection = RademacherProjection(dim_in, d, seed)
    together = projection(x)
    torch.testing.assert_close(together, x @ dense, rtol=1e-5, atol=1e-3)
    one_by_one = torch.cat([projection(x[i : i + 1]) for i in range(5)])
    # the matrix is the same bit for bit; the products only differ by the BLAS kernel's rounding
    assert ((together - one_by_one).norm(dim=1) / together.norm(dim=1)).max() < 1e-5
    assert torch.equal(projection.dense(), dense)
    assert not torch.equal(RademacherProjection(dim_in, d, seed + 1).dense(), dense)
