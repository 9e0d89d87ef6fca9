"""Per-row LoRA gradients of the response loss, for a whole micro-batch in one forward and one backward.

For a LoRA layer `y = W x + s * B(A(x))`, the gradient of a loss with respect to `A` is a sum over tokens of
outer products `sum_t dL/d(Ax)_t (x)_t^T`, and likewise `dL/dB = sum_t dL/d(BAx)_t (Ax)_t^T`. Hooks on every
`lora_A` / `lora_B` `nn.Linear` capture their inputs and the gradients of their outputs; one einsum over the
(masked) token dimension then gives each row its own gradient, with no per-parameter `.grad` accumulated.

Each row's loss is its own mean next-token NLL over its response tokens (as `CrossEntropyScorer`'s `ce`); the
backward pass runs on the sum of these per-row means, and since rows never see each other (right padding under
causal attention, padded positions masked out of the einsum), row r's captured gradients are those of its own
loss alone. The model must be in eval mode (LoRA dropout off), as LESS computes its gradients.

Example:
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from peft import LoraConfig, get_peft_model
    >>> _ = torch.manual_seed(0)
    >>> config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    ...                      num_attention_heads=2, num_key_value_heads=2)
    >>> model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    >>> grads = LoRAGradients(model.eval())
    >>> flat = grads.per_row([([1, 2, 3, 4], [(2, 4)]), ([5, 6, 7], [(1, 3)])])
    >>> tuple(flat.shape) == (2, grads.dim)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..encoding import Units


@dataclass
class _Site:
    """One hooked `nn.Linear` (a `lora_A` or `lora_B`): its parameter name and what the hooks captured."""

    name: str
    module: torch.nn.Linear
    inputs: torch.Tensor | None = None
    output: torch.Tensor | None = None


def lora_parameter_names(model: torch.nn.Module) -> list[str]:
    """The trainable LoRA weights' names, in `named_parameters()` order (the order of the flat vectors)."""
    return [n for n, p in model.named_parameters() if p.requires_grad and ".lora_" in n]


class LoRAGradients:
    """Batched per-row gradients of every trainable LoRA weight of a peft model, as one flat vector per row.

    The flat vector concatenates the weights in `names` order (each flattened row-major), so that Adam
    state and checkpoints index it the same way (`flatten`).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.names = lora_parameter_names(model)
        if not self.names:
            raise ValueError("the model has no trainable LoRA weights (load the adapter with is_trainable=True)")
        by_name = dict(model.named_parameters())
        modules = dict(model.named_modules())
        self.sites: list[_Site] = []
        for name in self.names:
            module_name, leaf = name.rsplit(".", 1)
            module = modules.get(module_name)
            if leaf != "weight" or not isinstance(module, torch.nn.Linear) or module.bias is not None:
                raise ValueError(f"{name}: only bias-free LoRA Linear weights are supported")
            self.sites.append(_Site(name, module))
        self.shapes = [tuple(by_name[n].shape) for n in self.names]
        self.sizes = [by_name[n].numel() for n in self.names]
        self.dim = sum(self.sizes)
        self.decoder = model.get_base_model().get_decoder()
        self.head = model.get_base_model().get_output_embeddings()
        self.device = next(model.parameters()).device
        self.pad_id = 0

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tensors by parameter name (e.g. Adam moments) as one flat vector in this object's order."""
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise KeyError(f"no entry for {missing[:3]} ({len(missing)} of {len(self.names)} LoRA weights)")
        return torch.cat([tensors[n].reshape(-1).float() for n in self.names])

    def _hooks(self) -> list[Any]:
        handles = []
        for site in self.sites:

            def capture(module: Any, args: tuple, output: torch.Tensor, site: _Site = site) -> None:
                site.inputs = args[0]
                site.output = output

            handles.append(site.module.register_forward_hook(capture))
        return handles

    def per_row(self, rows: Sequence[Units]) -> torch.Tensor:
        """[len(rows), dim] float32: each row's gradient of its mean response NLL. Spans are (start, end)
        token positions of the targets; every row needs at least one target token after position 0."""
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        at_row, at_pos, labels, weights = [], [], [], []
        for r, (seq, spans) in enumerate(rows):
            ids[r, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
            mask[r, : len(seq)] = True
            positions = [t for start, end in spans for t in range(max(start, 1), end)]
            if not positions:
                raise ValueError(f"row {r} has no target token to predict")
            at_row += [r] * len(positions)
            at_pos += [t - 1 for t in positions]  # token t is predicted from position t - 1
            labels += [seq[t] for t in positions]
            weights += [1.0 / len(positions)] * len(positions)
        handles = self._hooks()
        try:
            with torch.enable_grad():
                hidden = self.decoder(input_ids=ids.to(self.device)).last_hidden_state
                picked = hidden[torch.as_tensor(at_row), torch.as_tensor(at_pos)]
                logp = torch.log_softmax(self.head(picked).float(), dim=-1)
                label_t = torch.as_tensor(labels, device=self.device)
                nll = -logp.gather(-1, label_t[:, None]).squeeze(-1)
                loss = (nll * torch.as_tensor(weights, device=self.device)).sum()  # sum of per-row means
                outputs = [site.output for site in self.sites]
                grads = torch.autograd.grad(loss, outputs, allow_unused=True)
        finally:
            for handle in handles:
                handle.remove()
        keep = mask.to(self.device)[:, :, None]
        flat = torch.empty((len(rows), self.dim), dtype=torch.float32, device=self.device)
        offset = 0
        for site, grad, size in zip(self.sites, grads, self.sizes, strict=True):
            if grad is None:
                flat[:, offset : offset + size] = 0
            else:
                # [b, t, out] x [b, t, in] -> [b, out, in]: the weight's gradient, one per row
                masked = torch.where(keep, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
                per_row = torch.einsum("bto,bti->boi", masked, site.inputs.detach().to(grad.dtype))
                flat[:, offset : offset + size] = per_row.reshape(len(rows), -1).float()
            offset += size
            site.inputs = site.output = None
        return flat


def adam_precondition(grads: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor) -> torch.Tensor:
    """LESS's Adam update direction for gradients `grads` [rows, dim] given flat Adam moments [dim]:
    `(0.9 m + 0.1 g) / sqrt(0.999 v + 0.001 g^2 + 1e-8)`, no bias correction (as the reference).

    Example:
        >>> round(adam_precondition(torch.tensor([[1.0]]), torch.tensor([0.0]), torch.tensor([0.0])).item(), 4)
        3.1623
    """
    m = 0.9 * exp_avg + 0.1 * grads
    v = 0.999 * exp_avg_sq + 0.001 * grads.square()
    return m / torch.sqrt(v + 1e-8)
