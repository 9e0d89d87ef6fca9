"""LESS's warm-up (`hf_select.less.warmup`): the sample, the encoding (the scorers'), the per-epoch checkpoints
(LoRA weights, Adam state by name, mean learning rate), resuming to the same result, the CLI and its estimate.

A tiny random Llama with LoRA on a few dozen rows: each training takes a second or two."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import TrainerCallback

from hf_select.cli import main
from hf_select.errors import InputError
from hf_select.less import LESSWarmup, WarmupRecord, load_checkpoints, warmup
from hf_select.less.estimate import model_sizes, warmup_estimate
from hf_select.less.warmup_trainer import TRAINER_DIR
from hf_select.scorers import CrossEntropyScorer

ROWS = 40


@pytest.fixture(scope="module")
def pool() -> Dataset:
    """Single- and multi-turn rows (one with no assistant turn, which cannot be trained on)."""
    rows = []
    for i in range(ROWS):
        turns = [
            {"from": "human", "value": f"What is {i} plus {i}?"},
            {"from": "gpt", "value": f"It is {2 * i}. " * (1 + i % 3)},
        ]
        if i % 4 == 1:
            turns += [{"from": "human", "value": "And times two?"}, {"from": "gpt", "value": f"That is {4 * i}."}]
        if i == 7:
            turns = turns[:1]  # no response
        rows.append({"conversations": turns})
    return Dataset.from_list(rows)


def settings(model: str, **overrides: object) -> LESSWarmup:
    config = {
        "model": model, "lora_r": 4, "lora_alpha": 16, "epochs": 3, "sample": 0.5, "batch_size": 4,
        "gradient_accumulation": 2, "max_length": 64, "learning_rate": 1e-3,
    }  # fmt: skip
    return LESSWarmup(**{**config, **overrides})  # type: ignore[arg-type]


def tensors(folder: object, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(folder / name))  # type: ignore[operator]


# --- the sample and the record ---------------------------------------------------------------------------


def test_sample_is_seeded_five_percent_by_default() -> None:
    default = LESSWarmup(model="m")
    assert default.sample_size(1000) == 50 and default.sample_size(10) == 1  # at least one row
    assert default.sample_indices(1000) == default.sample_indices(1000)
    assert default.sample_indices(1000) != LESSWarmup(model="m", seed=1).sample_indices(1000)
    picked = default.sample_indices(1000)
    assert picked == sorted(set(picked)) and picked[0] >= 0 and picked[-1] < 1000
    assert LESSWarmup(model="m", sample=7).sample_size(1000) == 7  # a count
    with pytest.raises(InputError, match="the pool has 5"):
        LESSWarmup(model="m", sample=7).sample_size(5)
    assert (default.lora_r, default.lora_alpha, default.lora_dropout) == (128, 512.0, 0.1)
    assert (default.epochs, default.learning_rate, default.lr_scheduler, default.warmup) == (4, 2e-5, "linear", 0.03)
    assert default.lora_targets == ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.mark.parametrize(
    "bad, message",
    [({"sample": 1.5}, "whole number"), ({"sample": 0}, "sample"), ({"epochs": 0}, "epochs"),
     ({"lora_r": 0}, "lora_r"), ({"warmup": 1.0}, "warmup"), ({"lora_targets": []}, "lora_targets"),
     ({"template": "study", "turns": "all"}, "last turn only"), ({"dtype": "float16"}, "dtype")],
)  # fmt: skip
def test_bad_settings_are_refused_at_once(bad: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        LESSWarmup(model="m", **bad)


@pytest.mark.parametrize("template, max_length", [("chat", 60), ("paper", 44)])
def test_training_loss_is_the_ce_scorers_loss(tiny_model: str, pool: Dataset, template: str, max_length: int) -> None:
    """Train-time tokens are scoring-time tokens: the base model's loss on each training example (labels on
    the response only) equals `CrossEntropyScorer`'s `ce` of that row, same template and max length."""
    from transformers import AutoModelForCausalLM

    config = settings(tiny_model, template=template, turns="last", max_length=max_length)
    rows = pool.select(range(12))
    examples, skipped = config.examples(rows)
    assert skipped == {"no assistant turn": 1}
    scored = rows.map(CrossEntropyScorer(model=tiny_model, template=template, max_length=max_length), batched=True)
    ce = [c for c, e in zip(scored["ce"], scored["ce_error"], strict=True) if not e]
    assert len(ce) == len(examples) == 11
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():
        ids, labels = ([torch.as_tensor(e[key])[None] for e in examples] for key in ("input_ids", "labels"))
        losses = [model(input_ids=i, labels=y).loss.item() for i, y in zip(ids, labels, strict=True)]
    np.testing.assert_allclose(losses, ce, rtol=1e-5)
    assert any(len(e["input_ids"]) == max_length for e in examples)  # some rows were cut, as the scorer cuts them


# --- checkpoints --------------------------------------------------------------------------------------------


def expected_mean_rates(config: LESSWarmup, n_examples: int) -> list[float]:
    """Linear warm-up then linear decay, written from the schedule's definition, averaged per epoch."""
    per_epoch = config.steps_per_epoch(n_examples)
    total = per_epoch * config.epochs
    warm = math.ceil(total * config.warmup)
    rates = [config.learning_rate * (s / warm if s < warm else (total - s) / (total - warm)) for s in range(total)]
    return [float(np.mean(rates[e * per_epoch : (e + 1) * per_epoch])) for e in range(config.epochs)]


def test_every_epoch_keeps_lora_weights_adam_state_by_name_and_mean_lr(
    tiny_model: str, pool: Dataset, tmp_path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = settings(tiny_model, epochs=3, warmup=0.2)
    record = config.run(pool, tmp_path / "w")
    assert config.trained_epochs == [1, 2, 3]
    assert not (tmp_path / "w" / TRAINER_DIR).exists()  # Trainer's own checkpoints are gone once complete
    loaded = WarmupRecord.load(tmp_path / "w")
    assert loaded == record
    assert loaded.sample_seed == 0 and loaded.sample_indices == config.sample_indices(ROWS)
    assert loaded.template == "chat" and loaded.lora["r"] == 4 and loaded.training["epochs"] == 3
    n_examples = loaded.training["rows"]
    assert n_examples == len(loaded.sample_indices) - (7 in loaded.sample_indices)

    checkpoints = load_checkpoints(tmp_path / "w")
    assert [c.epoch for c in checkpoints] == [1, 2, 3]
    per_epoch = config.steps_per_epoch(n_examples)
    assert [c.step for c in checkpoints] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    np.testing.assert_allclose([c.learning_rate for c in checkpoints], expected_mean_rates(config, n_examples))

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(checkpoints[-1].path))
    trainable = {n for n, _ in PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model), str(checkpoints[-1].path), is_trainable=True
    ).named_parameters() if "lora_" in n}  # fmt: skip
    adam = checkpoints[-1].adam_state()
    assert set(adam) == trainable and len(adam) == 2 * 4 * 2  # lora_A/B x q/k/v/o x 2 layers
    params = dict(model.named_parameters())
    for name, (exp_avg, exp_avg_sq) in adam.items():
        assert exp_avg.shape == params[name].shape == exp_avg_sq.shape
        assert (exp_avg_sq >= 0).all() and exp_avg_sq.abs().sum() > 0
    lora_b = [p for n, p in params.items() if "lora_B" in n]
    assert all(p.abs().sum() > 0 for p in lora_b)  # trained (peft starts B at zero)
    first = tensors(checkpoints[0].path, "adapter_model.safetensors")
    last = tensors(checkpoints[-1].path, "adapter_model.safetensors")
    assert any(not torch.equal(first[k], last[k]) for k in first)  # each epoch has its own weights


class Interrupt(TrainerCallback):
    """Ctrl-C right after the LESS checkpoint of epoch `epoch` is written, or after optimizer step `step`."""

    def __init__(self, epoch: int | None = None, step: int | None = None) -> None:
        self.epoch, self.step = epoch, step

    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if round(state.epoch) == self.epoch:
            raise KeyboardInterrupt

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    "interrupt, interrupt_after", [({"epoch": 1}, 1), ({"epoch": 2}, 2), ({"step": 4}, 1)],
    ids=["after-epoch-1", "after-epoch-2", "mid-epoch-2"],
)  # fmt: skip
def test_resume_after_an_interrupt_equals_an_uninterrupted_run(
    tiny_model: str, pool: Dataset, tmp_path, interrupt: dict, interrupt_after: int
) -> None:
    """Interrupted after epoch k (or in the middle of epoch k + 1), a re-run trains epochs k + 1.. only and ends
    with the weights, Adam state and learning rates of a run that was never interrupted."""
    whole = settings(tiny_model, epochs=3)
    whole.run(pool, tmp_path / "whole")
    assert whole.steps_per_epoch(whole_rows(tmp_path / "whole")) == 3  # so step 4 is inside epoch 2

    broken = settings(tiny_model, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        broken.run(pool, tmp_path / "resumed", callbacks=[Interrupt(**interrupt)])
    assert [c.epoch for c in load_checkpoints(tmp_path / "resumed")] == list(range(1, interrupt_after + 1))
    (tmp_path / "resumed" / f"epoch-{interrupt_after + 1}").mkdir(exist_ok=True)  # a half-written epoch is discarded
    resumed = settings(tiny_model, epochs=3)
    resumed.run(pool, tmp_path / "resumed")
    assert resumed.trained_epochs == list(range(interrupt_after + 1, 4))  # only the missing epochs

    a, b = load_checkpoints(tmp_path / "whole"), load_checkpoints(tmp_path / "resumed")
    assert [(c.epoch, c.step) for c in a] == [(c.epoch, c.step) for c in b]
    np.testing.assert_allclose([c.learning_rate for c in a], [c.learning_rate for c in b], rtol=1e-12)
    for x, y in zip(a, b, strict=True):
        for name in ("adapter_model.safetensors", "adam.safetensors"):
            tx, ty = tensors(x.path, name), tensors(y.path, name)
            assert tx.keys() == ty.keys()
            for key in tx:
                torch.testing.assert_close(tx[key], ty[key], rtol=1e-5, atol=1e-7)
    assert (
        WarmupRecord.load(tmp_path / "whole").sample_indices == WarmupRecord.load(tmp_path / "resumed").sample_indices
    )


KILLED_RUN = """
import sys
from datasets import load_from_disk
from hf_select.less import LESSWarmup
LESSWarmup(**{config}).run(load_from_disk(sys.argv[1]), sys.argv[2])
"""


def test_resume_after_kill_9_equals_an_uninterrupted_run(tiny_model: str, pool: Dataset, tmp_path) -> None:
    """A real `kill -9` as soon as epoch 1's checkpoint is complete: the re-run trains only the epochs that
    were not complete and ends where an uninterrupted run ends."""
    import os
    import signal
    import subprocess
    import sys
    import time

    big = Dataset.from_list(pool.to_list() * 3)  # epochs long enough for the kill to land in epoch 2
    big.save_to_disk(str(tmp_path / "pool"))
    config = {"model": tiny_model, "lora_r": 4, "lora_alpha": 16, "epochs": 2, "sample": 0.5, "batch_size": 4,
              "gradient_accumulation": 2, "max_length": 64, "learning_rate": 1e-3}  # fmt: skip
    out = tmp_path / "killed"
    script = KILLED_RUN.replace("{config}", repr(config))
    process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "pool"), str(out)])
    try:
        deadline = time.monotonic() + 600
        while not (out / "epoch-1" / "checkpoint.json").exists():
            assert process.poll() is None and time.monotonic() < deadline, "the warm-up ended before epoch 1"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    done = [c.epoch for c in load_checkpoints(out)]
    assert done == [1]
    resumed = LESSWarmup(**config)  # type: ignore[arg-type]
    resumed.run(big, out)
    assert resumed.trained_epochs == [2]
    LESSWarmup(**config).run(big, tmp_path / "whole")  # type: ignore[arg-type]
    for x, y in zip(load_checkpoints(tmp_path / "whole"), load_checkpoints(out), strict=True):
        assert (x.epoch, x.step, x.learning_rate) == (y.epoch, y.step, y.learning_rate)
        for name in ("adapter_model.safetensors", "adam.safetensors"):
            tx, ty = tensors(x.path, name), tensors(y.path, name)
            assert tx.keys() == ty.keys()
            for key in tx:
                torch.testing.assert_close(tx[key], ty[key], rtol=1e-5, atol=1e-7)


def test_a_complete_warmup_is_not_trained_again_and_other_settings_are_refused(
    tiny_model: str, pool: Dataset, tmp_path
) -> None:
    out = tmp_path / "w"
    warmup(pool, out, **vars(settings(tiny_model, epochs=1)))
    stamp = (out / "epoch-1" / "adam.safetensors").stat().st_mtime_ns
    again = settings(tiny_model, epochs=1)
    again.run(pool, out)
    assert again.trained_epochs == [] and (out / "epoch-1" / "adam.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(
        InputError, match=r"another sample \(sample_indices, sample_seed, training.examples_sha256, training.seed\)"
    ):
        settings(tiny_model, epochs=1, seed=1).run(pool, out)
    with pytest.raises(InputError, match="training.examples_sha256"):  # same positions, other rows
        louder = pool.map(lambda r: {"conversations": [{**t, "value": t["value"] + "!"} for t in r["conversations"]]})
        settings(tiny_model, epochs=1).run(louder, out)
    redone = settings(tiny_model, epochs=1, seed=1)
    redone.run(pool, out, overwrite=True)
    assert redone.trained_epochs == [1] and WarmupRecord.load(out).sample_seed == 1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds no LESS warm-up"):
        settings(tiny_model, epochs=1).run(pool, tmp_path / "other")


def test_nothing_trainable_is_a_clear_error(tiny_model: str, pool: Dataset, tmp_path) -> None:
    with pytest.raises(InputError, match=r"none of the 1 sampled rows can be trained on \(1 x no assistant turn"):
        settings(tiny_model, sample=1).run(pool.select([7]), tmp_path / "w")


def whole_rows(folder: object) -> int:
    return WarmupRecord.load(folder).training["rows"]  # type: ignore[arg-type]


# --- the command line and its estimate ------------------------------------------------------------------


def test_cli_warmup_resume_and_dry_run(tiny_model: str, pool: Dataset, tmp_path, capsys) -> None:
    data = tmp_path / "pool.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in pool.to_list()))
    out = tmp_path / "w"
    common = [str(data), "-o", str(out), "--model", tiny_model, "--lora-r", "4", "--lora-alpha", "16", "--epochs",
              "2", "--sample", "10", "--max-length", "64", "--lora-targets", "q_proj,v_proj", "--quiet"]  # fmt: skip
    assert main(["less-warmup", *common, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert not out.exists()
    config = LESSWarmup(model=tiny_model, lora_r=4, lora_alpha=16, epochs=2, sample=10, max_length=64,
                        lora_targets=["q_proj", "v_proj"])  # fmt: skip
    estimate = warmup_estimate(config, pool)
    assert f"{estimate['tokens']:,} tokens" in printed and "2 optimizer steps" in printed
    params, lora = model_sizes(tiny_model, None, 4, ["q_proj", "v_proj"])
    assert lora == 2 * 2 * 4 * (64 + 64) and f"LoRA {lora:,} trainable" in printed  # 2 layers x q, v
    assert estimate["flops"] == 6 * params * estimate["tokens"] * 2

    assert main(["less-warmup", *common]) == 0
    assert "trained epochs 1, 2" in capsys.readouterr().out
    record = WarmupRecord.load(out)
    assert record.lora["target_modules"] == ["q_proj", "v_proj"] and len(record.sample_indices) == 10
    assert record.source["dataset"] == str(data)
    assert main(["less-warmup", *common]) == 0
    assert "trained nothing" in capsys.readouterr().out
    assert main(["less-warmup", *common[:-1], "--seed", "3"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["less-warmup", *common, "--sample", "1.5"]) == 2
    assert "whole number" in capsys.readouterr().err


# --- the real SmolLM2 ----------------------------------------------------------------------------------------


def test_warmup_on_smollm2_loads_back_into_peft(tmp_path) -> None:
    """SmolLM2-135M-Instruct on real ShareGPT rows, at small settings (r=8, 2 epochs, max length 64): every
    epoch's adapter loads back with `PeftModel.from_pretrained`, its Adam state names SmolLM2's LoRA parameters,
    and the trained adapter changes the model's output."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from hf_select import embedded
    from hf_select.pool import load_pool
    from hf_select.scorers import TokenLengthScorer

    pool, _, _ = load_pool(embedded.SHAREGPT)
    counted = pool.select(range(120)).map(TokenLengthScorer(tokenizer=embedded.SMOLLM2), batched=True)
    short = [i for i, (p, e) in enumerate(zip(counted["n_tokens_prompt"], counted["n_tokens_error"], strict=True))
             if not e and p < 56]  # fmt: skip
    assert len(short) >= 10
    rows = counted.select(short)
    config = LESSWarmup(
        model=embedded.SMOLLM2, lora_r=8, lora_alpha=32, epochs=2, sample=8, max_length=64, batch_size=4,
        gradient_accumulation=1, learning_rate=1e-3,
    )  # fmt: skip
    record = config.run(rows, tmp_path / "w")
    assert record.training["rows"] == 8 and record.template == "chat" and len(record.sample_indices) == 8
    checkpoints = load_checkpoints(tmp_path / "w")
    assert [(c.epoch, c.step) for c in checkpoints] == [(1, 2), (2, 4)]
    assert all(c.learning_rate > 0 for c in checkpoints)

    path = embedded.resolve(embedded.SMOLLM2, weights=True)
    ids = torch.as_tensor(config.examples(rows.select([0]))[0][0]["input_ids"])[None]
    with torch.no_grad():
        before = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)(ids).logits
    for checkpoint in checkpoints:
        base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, str(checkpoint.path), is_trainable=True)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        adam = checkpoint.adam_state()
        assert set(adam) == trainable and len(adam) == 30 * 4 * 2  # 30 layers x q/k/v/o x lora_A/B
        saved = tensors(checkpoint.path, "adapter_model.safetensors")
        assert len(saved) == len(adam)
        with torch.no_grad():
            after = model(ids).logits
        assert (after - before).abs().max() > 1e-4  # the adapter is loaded and trained
