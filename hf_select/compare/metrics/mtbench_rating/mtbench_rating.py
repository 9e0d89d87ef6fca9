"""MT-bench single-answer grading: the judge's 1-10 rating read from each judgment ("[[rating]]", then
FastChat's fallback "[rating]"), averaged over all turns and per turn. Shipped with hf-select so
`evaluate.load` reads it from disk."""

import re

import datasets
import evaluate

_DESCRIPTION = "Mean MT-bench judge rating (1-10) over the rated answers; unrated judgments are counted apart."
_KWARGS = """
Args:
    judgments: the judge's replies.
    turns: the turn (1 or 2) each judgment rates.
Returns:
    score (mean over rated turns), turn_1, turn_2, n (judgments), unrated (judgments without a rating).
"""

PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def rating(text):
    match = PATTERN.search(text) or BACKUP.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value if 1.0 <= value <= 10.0 else None


class MTBenchRating(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Zheng et al. 2023, Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena",
            inputs_description=_KWARGS,
            features=datasets.Features({"judgments": datasets.Value("string"), "turns": datasets.Value("int32")}),
        )

    def _compute(self, judgments, turns):
        rated = [(t, rating(j)) for j, t in zip(judgments, turns, strict=True)]
        scores = [r for _, r in rated if r is not None]

        def mean(values):
            return sum(values) / len(values) if values else float("nan")

        return {
            "score": mean(scores),
            "turn_1": mean([r for t, r in rated if t == 1 and r is not None]),
            "turn_2": mean([r for t, r in rated if t == 2 and r is not None]),
            "n": len(rated),
            "unrated": len(rated) - len(scores),
        }
