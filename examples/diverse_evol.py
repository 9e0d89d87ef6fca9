"""DiverseEvol on a pool: the study's 10K schedule (1,000 random rows + 3 rounds x 3,000 k-center picks,
the model fine-tuned on its own picks before each round) by default, shrinkable from the command line.

Each round trains the model one epoch on the rows selected so far (`SFTTrainStep`: transformers Trainer,
loss on every assistant turn, the study's learning rate 7e-6 with cosine decay), embeds the whole pool
with it (mean of the last hidden layer over each row's own tokens) and adds the `--n-query` rows farthest
from the selected set (`--mode one-shot`, the study's reference, or `greedy`). Writes a selection folder
(data/, selection.json with the init rows and every round's picks and timings, README.md).

The full schedule is a GPU job (the study: 8xA100 for days at 8B; SmolLM2-135M is much lighter). On a
CPU, shrink everything, e.g. (a few minutes with SmolLM2-135M):

    python examples/diverse_evol.py --rows 60 --init 10 --n-query 5 --rounds 2 --max-length 128 -o de-small

or run it on any local causal LM folder (`--model path/to/model`). `--pool` takes whatever `hf-select`
takes (a Hub id, a save_to_disk folder, json/jsonl/parquet files; default: the embedded ShareGPT pool).
"""

from __future__ import annotations

import argparse
import sys
import time

from hf_select import HFSelectError, TokenLengthScorer, save_selection
from hf_select.pool import load_pool, prepare_output, staged_output
from hf_select.select.diverse_evol import MeanHiddenEmbed, SFTTrainStep, diverse_evol
from hf_select.summary import describe, table


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except HFSelectError as err:  # a user mistake (e.g. a schedule larger than the pool)
        print(f"diverse_evol: error: {err}", file=sys.stderr)
        return 2


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default="embedded:sharegpt")
    parser.add_argument("--model", default="embedded:smollm2", help="causal LM trained and embedded with")
    parser.add_argument("--rows", type=int, help="use only the first N rows of the pool")
    parser.add_argument("--init", type=int, default=1000)
    parser.add_argument("--n-query", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=["one-shot", "greedy"], default="one-shot")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--template", choices=["auto", "paper", "chat"], default="auto")
    parser.add_argument("--max-length", type=int, default=4096, help="tokens per row, training and embedding")
    parser.add_argument("--learning-rate", type=float, default=7e-6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gradient-accumulation", type=int, default=1)
    parser.add_argument(
        "--batch-tokens", type=int, help="embedding micro-batch budget (default 32768 on GPU, 4096 on CPU)"
    )
    parser.add_argument("-o", "--output", default="diverse-evol")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    out = prepare_output(args.output, [args.pool], overwrite=args.overwrite)
    pool, source, scorers = load_pool(args.pool)
    if args.rows is not None:
        pool = pool.select(range(min(args.rows, len(pool))))
        source.update(num_rows=len(pool), fingerprint=pool._fingerprint, limit=args.rows)
    counter = TokenLengthScorer(tokenizer=args.model, template=args.template)
    pool = counter.map(pool)  # n_tokens, for the record and the card
    train = SFTTrainStep(
        model=args.model, template=args.template, max_length=args.max_length, learning_rate=args.learning_rate,
        batch_size=args.batch_size, gradient_accumulation=args.gradient_accumulation, seed=args.seed,
    )  # fmt: skip
    embed = MeanHiddenEmbed(
        tokenizer=args.model, template=args.template, max_length=args.max_length, batch_tokens=args.batch_tokens
    )
    total = args.init + args.rounds * args.n_query
    print(f"DiverseEvol: {args.init:,} + {args.rounds} x {args.n_query:,} = {total:,} rows of {len(pool):,}")
    t0 = time.perf_counter()
    sel = diverse_evol(
        pool, init=args.init, n_query=args.n_query, rounds=args.rounds, seed=args.seed, mode=args.mode,
        train_step=train, embed=embed, source=source, scorers=[*scorers, counter.describe()],
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    for d in sel.record.parameters["round_details"]:
        print(
            f"round {d['round']}: trained on {d['trained_on']:,} rows in {d['train_seconds']:.1f} s, embedded the "
            f"pool in {d['embed_seconds']:.1f} s, picked {len(d['picks']):,} in {d['select_seconds']:.2f} s"
        )
    sel.record.command = "python examples/diverse_evol.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with staged_output(out, [args.pool], overwrite=args.overwrite) as folder:
        save_selection(sel.dataset, folder, sel.record, pool=pool)
    print(table({"pool": describe(pool), "diverse-evol": describe(sel.dataset)}))
    print(f"{elapsed:.1f} s in all; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
