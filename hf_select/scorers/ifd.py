"""IFD, instruction-following difficulty (Cherry LLM / Superfiltering)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .. import study
from ..conversation import Turn
from ..encoding import Units, assistant_header
from ..errors import InputError, RowError
from .lm import LMResources, LMScorer


@dataclass(kw_only=True)
class IFDScorer(LMScorer):
    """Adds `ifd = L(response | history) / L(response)`, `ifd_loss_cond` and `ifd_loss_direct`.

    Both losses are mean NLLs over the very same response token ids: conditioned on the rendered
    history, and unconditioned after the assistant header alone (paper template: `"Assistant: "`).
    Both passes go through the same length-sorted micro-batches. IFD > 1 means the instruction does
    not help; `hf_select.select.top_k(ds, "ifd", n, max_value=1.0)` excludes those rows, as Cherry LLM does.

    `template="study"` renders the study's IFD text (`hf_select.study`). `ifd_response_span="text-search"`
    (with it only) finds the response span the study's way, by searching the text, which leaves the first
    response token out of most unconditioned losses: only to reproduce the study's numbers.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"prompt": ["Name a colour."], "response": ["Blue."]})
        >>> ds = ds.map(IFDScorer(model="embedded:smollm2"), batched=True)  # doctest: +SKIP
        >>> 0 < ds[0]["ifd"] < 1  # doctest: +SKIP
        True
    """

    ifd_response_span: Literal["exact", "text-search"] = "exact"
    """`exact`: the response's own ids in both passes; `text-search`: the study's span, found by searching the
    text (needs template="study"; only to reproduce the study's numbers)."""

    method: ClassVar[str] = "ifd"
    score_columns: ClassVar[tuple[str, ...]] = ("ifd", "ifd_loss_cond", "ifd_loss_direct")
    error_column: ClassVar[str] = "ifd_error"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ifd_response_span not in ("exact", "text-search"):
            raise InputError(f"ifd_response_span must be 'exact' or 'text-search', got {self.ifd_response_span!r}")
        if self.ifd_response_span == "text-search" and (self.template != "study" or self.turns != "last"):
            raise InputError("ifd_response_span='text-search' reproduces the study's script: it needs template='study'")

    def prepare(self, turns: list[Turn], resources: LMResources) -> Any:
        if self.ifd_response_span == "text-search":  # the script tokenises the batch its own way, in `encode`
            return turns
        return super().prepare(turns, resources)

    def encode(self, prepared: list[Any], resources: LMResources) -> list[Units | tuple[Units, Units] | RowError]:
        """Per row, its conditioned unit; with `text-search`, (conditioned, unconditioned) units, the study's
        spans (the two passes may score different tokens), or a `RowError`."""
        if self.ifd_response_span == "text-search":
            tokenizer = resources.encoder.tokenizer
            return study.per_row(*study.ifd_text_search_units(tokenizer, prepared, self.max_length))
        return super().encode(prepared, resources)

    def compute(self, rows: list[Any], resources: LMResources) -> tuple[dict[str, list], list[str | None]]:
        searched = self.ifd_response_span == "text-search"
        units: list[Units] = [c for c, _ in rows] if searched else rows
        if searched:  # each row's unconditioned unit came with it
            direct, owners = [d for _, d in rows], list(range(len(rows)))
        else:
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
            assert searched or cond[k].count == direct_count[k], "conditioned and direct passes scored different tokens"
            loss_cond[k] = cond[k].mean
            loss_direct[k] = direct_sum[k] / direct_count[k]
            ifd[k] = loss_cond[k] / loss_direct[k] if loss_direct[k] > 0 else float("inf")
        errors = [failed.get(k) for k in range(n)]
        return {"ifd": ifd, "ifd_loss_cond": loss_cond, "ifd_loss_direct": loss_direct}, errors
