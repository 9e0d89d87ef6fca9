"""IFD, instruction-following difficulty (Cherry LLM / Superfiltering)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..encoding import Units, assistant_header
from .lm import LMResources, LMScorer


@dataclass(kw_only=True)
class IFDScorer(LMScorer):
    """Adds `ifd = L(response | history) / L(response)`, `ifd_loss_cond` and `ifd_loss_direct`.

    Both losses are mean NLLs over the very same response token ids: conditioned on the rendered
    history, and unconditioned after the assistant header alone (paper template: `"Assistant: "`).
    Both passes go through the same length-sorted micro-batches. IFD > 1 means the instruction does
    not help; `hf_select.select.top_k(ds, "ifd", n, max_value=1.0)` excludes those rows, as Cherry LLM does.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"prompt": ["Name a colour."], "response": ["Blue."]})
        >>> ds = ds.map(IFDScorer(model="embedded:smollm2"), batched=True)  # doctest: +SKIP
        >>> 0 < ds[0]["ifd"] < 1  # doctest: +SKIP
        True
    """

    method: ClassVar[str] = "ifd"
    score_columns: ClassVar[tuple[str, ...]] = ("ifd", "ifd_loss_cond", "ifd_loss_direct")
    error_column: ClassVar[str] = "ifd_error"

    def compute(self, units: list[Units], resources: LMResources) -> tuple[dict[str, list], list[str | None]]:
        header = assistant_header(resources.encoder)
        direct, owners = [], []
        for k, (ids, spans) in enumerate(units):
            for start, end in spans:  # the same (possibly truncated) response ids, after the header alone
                direct.append((header + ids[start:end], [(len(header), len(header) + end - start)]))
                owners.append(k)
        stats = resources.engine.nll(
            units + direct, batch_tokens=self.batch_tokens
        )  # one call: both passes share the micro-batches
        cond, unconditioned = stats[: len(units)], stats[len(units) :]
        direct_sum = [0.0] * len(units)
        direct_count = [0] * len(units)
        failed = {k: c.error for k, c in enumerate(cond) if c.error is not None}
        for owner, s in zip(owners, unconditioned, strict=True):
            direct_sum[owner] += s.sum
            direct_count[owner] += s.count
            if s.error is not None:
                failed.setdefault(owner, s.error)
        n = len(units)
        ifd: list[float | None] = [None] * n
        loss_cond: list[float | None] = [None] * n
        loss_direct: list[float | None] = [None] * n
        for k in range(n):
            if k in failed:
                continue
            assert cond[k].count == direct_count[k], "conditioned and direct passes scored different tokens"
            loss_cond[k] = cond[k].mean
            loss_direct[k] = direct_sum[k] / direct_count[k]
            ifd[k] = loss_cond[k] / loss_direct[k] if loss_direct[k] > 0 else float("inf")
        errors = [failed.get(k) for k in range(n)]
        return {"ifd": ifd, "ifd_loss_cond": loss_cond, "ifd_loss_direct": loss_direct}, errors
