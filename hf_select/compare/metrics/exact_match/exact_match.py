"""Exact match between generated answers and references, after stripping whitespace (and, by default,
ignoring case). Shipped with hf-select so `evaluate.load` reads it from disk: the Hub is not needed."""

import datasets
import evaluate

_DESCRIPTION = "Share of predictions equal to their reference after stripping surrounding whitespace."
_KWARGS = """
Args:
    predictions: list of generated strings.
    references: list of reference strings.
    ignore_case: compare case-insensitively (default True).
Returns:
    exact_match: share in [0, 1]; n: number of pairs.
"""


def _normal(text, ignore_case):
    text = " ".join(text.split())
    return text.lower() if ignore_case else text


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, ignore_case=True):
        hits = [
            _normal(p, ignore_case) == _normal(r, ignore_case) for p, r in zip(predictions, references, strict=True)
        ]
        return {"exact_match": sum(hits) / len(hits) if hits else float("nan"), "n": len(hits)}
