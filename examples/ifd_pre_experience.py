"""The full IFD pipeline of the study (Cherry LLM): pre-experience subset, a short fine-tune, then IFD
computed with the fine-tuned model.

1. Instruction embeddings: `EmbeddingScorer(text="instruction")`, the mean of the base model's last hidden
   layer over the rendered prompt's tokens -> column `instruction_embedding`.
2. Instruction perplexity: `PromptPerplexityScorer`, the base model's perplexity of that same rendered
   prompt (every token after the first predicted from the ones before) -> column `instruction_ppl`. (CE
   cannot give it: CE scores the response given the prompt, never the prompt itself.)
3. `pre_experience_subset`: k-means on the instruction embeddings (`--clusters`, 1,000 in the study), per
   cluster the rows between the 25th and 75th percentile of instruction perplexity, `--per-cluster` (10)
   evenly spaced ones: ~10K rows at the study's scale.
4. Fine-tune the base model 1 epoch on them (transformers Trainer, loss on every assistant turn) and save
   it with its tokenizer.
5. IFD of every pool row with the fine-tuned model (`IFDScorer`), and, with `--budget`, the top-IFD rows
   among those with IFD <= 1 (Cherry's rule).

Writes under `-o`: `pre-experience/` (selection folder), `model/` (the fine-tuned model), `pool-scored/`
(the pool with every column above, save_to_disk + hf_select.json) and `ifd-top/` with `--budget`.

The defaults are the study's (1,000 clusters x 10 rows, max length 4096, learning rate 7e-6): a GPU job
on the full pool. On a CPU, shrink it, e.g. with SmolLM2-135M (a few minutes):

    python examples/ifd_pre_experience.py --rows 120 --clusters 6 --per-cluster 3 --max-length 128 \\
        --learning-rate 1e-4 --budget 10 -o ifd-small
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

from hf_select import HFSelectError, IFDScorer, TokenLengthScorer, save_selection, select
from hf_select.pool import load_pool, prepare_output, save_scored
from hf_select.scorers.embedding import EmbeddingScorer, PromptPerplexityScorer
from hf_select.select.diverse_evol import SFTTrainStep
from hf_select.select.pre_experience import pre_experience_subset
from hf_select.summary import describe, table


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except HFSelectError as err:  # a user mistake (e.g. a budget larger than the rows with IFD <= 1)
        print(f"ifd_pre_experience: error: {err}", file=sys.stderr)
        return 2


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default="embedded:sharegpt")
    parser.add_argument("--model", default="embedded:smollm2", help="the base causal LM")
    parser.add_argument("--rows", type=int, help="use only the first N rows of the pool")
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--per-cluster", type=int, default=10)
    parser.add_argument("--low", type=float, default=25.0)
    parser.add_argument("--high", type=float, default=75.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--template", choices=["auto", "paper", "chat"], default="auto")
    parser.add_argument("--max-length", type=int, default=4096)
    parser.add_argument("--learning-rate", type=float, default=7e-6)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--budget", help="also select the top-IFD rows (IFD <= 1): a count, fraction or 'N tokens'")
    parser.add_argument("--num-proc", type=int, help="datasets.map workers for scoring (one per GPU)")
    parser.add_argument("-o", "--output", default="ifd-pre-experience")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    command = "python examples/ifd_pre_experience.py " + " ".join(sys.argv[1:] if argv is None else argv)

    out = prepare_output(args.output, [args.pool], overwrite=args.overwrite)
    shutil.rmtree(out, ignore_errors=True)  # written in place: the IFD records the fine-tuned model's own path
    out.mkdir(parents=True)
    pool, source, provenance = load_pool(args.pool)
    if args.rows is not None:
        pool = pool.select(range(min(args.rows, len(pool))))
        source.update(num_rows=len(pool), fingerprint=pool._fingerprint, limit=args.rows)
    common = {"template": args.template, "max_length": args.max_length}
    t0 = time.perf_counter()

    counter = TokenLengthScorer(tokenizer=args.model, template=args.template)
    embedder = EmbeddingScorer(model=args.model, text="instruction", **common)
    perplexity = PromptPerplexityScorer(model=args.model, **common)
    pool = counter.map(pool, num_proc=args.num_proc)
    pool = embedder.map(pool, num_proc=args.num_proc).rename_columns(
        {"embedding": "instruction_embedding", "embedding_error": "instruction_embedding_error"}
    )
    pool = perplexity.map(pool, num_proc=args.num_proc).rename_columns(
        {"prompt_ce": "instruction_ce", "prompt_ppl": "instruction_ppl", "prompt_ppl_error": "instruction_ppl_error"}
    )
    t1 = time.perf_counter()
    print(f"1-2. instruction embeddings and perplexities of {len(pool):,} rows: {t1 - t0:.1f} s")

    entries = [*provenance, counter.describe(), embedder.describe(), perplexity.describe()]
    subset = pre_experience_subset(
        pool, n_clusters=args.clusters, per_cluster=args.per_cluster, low=args.low, high=args.high, seed=args.seed,
        source=source, scorers=entries,
    )  # fmt: skip
    subset.record.command = command
    save_selection(subset.dataset, out / "pre-experience", subset.record, pool=pool)
    t2 = time.perf_counter()
    print(f"3. pre-experience subset: {len(subset):,} rows ({args.clusters:,} clusters) in {t2 - t1:.1f} s")

    train = SFTTrainStep(
        model=args.model, template=args.template, max_length=args.max_length, epochs=args.epochs,
        learning_rate=args.learning_rate, batch_size=args.batch_size, seed=args.seed,
    )  # fmt: skip
    model = train(None, subset.dataset)
    model.save_pretrained(out / "model")
    train.load_tokenizer().save_pretrained(out / "model")
    t3 = time.perf_counter()
    metrics = train.last_metrics
    skipped = f"; skipped {metrics['skipped']}" if metrics["skipped"] else ""
    loss = metrics["train_loss"]
    print(f"4. fine-tuned on {metrics['examples']:,} rows (train loss {loss}{skipped}) in {t3 - t2:.1f} s")

    ifd = IFDScorer(model=str(out / "model"), **common)
    # The scorer's cache key holds the model's path, not its weights: never reuse a previous run's IFD.
    scored = ifd.map(pool, num_proc=args.num_proc, load_from_cache_file=False)
    save_scored(scored, out / "pool-scored", source=source, scorers=[*entries, {**ifd.describe(), "command": command}])
    t4 = time.perf_counter()
    print(f"5. IFD with the fine-tuned model: {len(scored):,} rows in {t4 - t3:.1f} s")

    summaries = {"pool": describe(scored), "pre-experience": describe(subset.dataset)}
    if args.budget:
        top = select.top_k(scored, "ifd", args.budget, max_value=1.0, source=source, scorers=[*entries, ifd.describe()])
        top.record.command = command
        save_selection(top.dataset, out / "ifd-top", top.record, pool=scored)
        summaries["ifd top (<= 1)"] = describe(top.dataset)
    print(table(summaries))
    print(f"{time.perf_counter() - t0:.1f} s in all; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
