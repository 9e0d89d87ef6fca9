"""Token-weighted response loss and perplexity from per-example summed negative log-likelihoods.

Each example gives the summed NLL (nats) of its response tokens and their count; the metric is the mean
NLL per response token over all examples and its exponential. Shipped with hf-select so `evaluate.load`
reads it from disk: the Hub is not needed."""

import math

import datasets
import evaluate

_DESCRIPTION = "Mean response-token negative log-likelihood (nats) and perplexity, weighted by tokens."
_KWARGS = """
Args:
    nll: list of summed response-token NLLs, one per example (nats).
    tokens: list of response-token counts, one per example.
Returns:
    loss: sum(nll) / sum(tokens); perplexity: exp(loss); tokens: sum(tokens); n: examples.
"""


class ResponsePerplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"nll": datasets.Value("float64"), "tokens": datasets.Value("int64")}),
        )

    def _compute(self, nll, tokens):
        total = sum(tokens)
        loss = sum(nll) / total if total else float("nan")
        return {"loss": loss, "perplexity": math.exp(loss) if total else float("nan"), "tokens": total, "n": len(nll)}
