"""The warm-up's training loop: transformers' `Trainer` on a `peft` LoRA, a LESS checkpoint per epoch, resume.

`train(settings, examples, out)` trains `settings.epochs` epochs with `Trainer` (AdamW, the settings'
schedule). After each epoch, once Trainer has saved its own full checkpoint under `out/trainer/` (adapter,
`optimizer.pt`, scheduler, RNG states, trainer state), a callback writes the LESS checkpoint
`out/epoch-K/` (`hf_select.less.checkpoints`): the adapter (`save_pretrained`), AdamW's `exp_avg` and
`exp_avg_sq` keyed by the `PeftModel`'s parameter names (Trainer's `optimizer.pt` keys them by position),
and, written last, `checkpoint.json` with the mean learning rate of the epoch's optimizer steps; then the
older Trainer checkpoints are deleted. So `epoch-K/checkpoint.json` implies that Trainer's checkpoint of
that step is complete, and a re-run resumes from it with `resume_from_checkpoint` (weights, optimizer,
scheduler, RNG; the data order of each epoch is seeded by the epoch): it trains only the later epochs and
ends where an uninterrupted run ends (`tests/test_less_warmup.py` checks weights and Adam state). When
every epoch is done, `out/trainer/` is removed.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .checkpoints import epoch_folder, load_checkpoints, save_adam_state, write_checkpoint_info

if TYPE_CHECKING:
    from .warmup_lora import Example, LESSWarmup

TRAINER_DIR = "trainer"


def adam_state_by_name(model: Any, optimizer: Any) -> dict[str, tuple[Any, Any]]:
    """{parameter name: (exp_avg, exp_avg_sq)} of every trainable parameter of `model`, from an Adam(W)
    optimizer (or accelerate's wrapper of one)."""
    inner = getattr(optimizer, "optimizer", optimizer)
    state: dict[str, tuple[Any, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        moments = inner.state.get(param, {})
        if "exp_avg" not in moments or "exp_avg_sq" not in moments:
            raise RuntimeError(f"the optimizer holds no Adam moments for {name}: is it Adam(W)?")
        state[name] = (moments["exp_avg"], moments["exp_avg_sq"])
    return state


def _callback_class() -> type:
    from transformers import TrainerCallback

    class LESSCheckpoints(TrainerCallback):
        """Records each optimizer step's learning rate; after Trainer's epoch checkpoint, writes LESS's."""

        def __init__(self, out: Path) -> None:
            self.out = out
            self.rates: list[float] = []
            self.mean_rate: float | None = None

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.rates = []

        def on_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
            self.rates.append(float(optimizer.param_groups[0]["lr"]))  # the scheduler steps after this call

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.mean_rate = sum(self.rates) / len(self.rates) if self.rates else 0.0

        def on_save(
            self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None, **kw: Any
        ) -> None:
            epoch = round(state.epoch)
            if self.mean_rate is None or abs(state.epoch - epoch) > 1e-6 or not state.is_world_process_zero:
                return  # not an epoch's end, or not the process that writes (under torchrun, rank 0 does)
            folder = epoch_folder(self.out, epoch)
            shutil.rmtree(folder, ignore_errors=True)
            model.save_pretrained(str(folder))
            save_adam_state(folder, adam_state_by_name(model, optimizer))
            write_checkpoint_info(folder, epoch=epoch, learning_rate=self.mean_rate, step=state.global_step)
            _keep_only(self.out / TRAINER_DIR, f"checkpoint-{state.global_step}")
            self.mean_rate = None

    return LESSCheckpoints


def _keep_only(trainer_dir: Path, keep: str | None) -> None:
    if trainer_dir.is_dir():
        for child in trainer_dir.iterdir():
            if child.name != keep:
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()


def resume_point(out: Path, epochs: int) -> tuple[int, Path | None]:
    """(complete epochs to keep, Trainer checkpoint to resume from). Epoch folders after the last complete
    one in a row are removed (an epoch interrupted while saving); without the Trainer checkpoint of the
    last complete epoch, training starts again from the beginning (with a warning)."""
    done = 0
    steps = {}
    for checkpoint in load_checkpoints(out):
        if checkpoint.epoch != done + 1 or checkpoint.epoch > epochs:
            break
        done = checkpoint.epoch
        steps[done] = checkpoint.step
    resume = out / TRAINER_DIR / f"checkpoint-{steps[done]}" if done else None
    if done < epochs and resume is not None and not (resume / "trainer_state.json").is_file():
        warnings.warn(
            f"{out}: epochs 1-{done} are complete but Trainer's checkpoint to resume from ({resume}) is missing; "
            "training again from the first epoch",
            UserWarning,
            stacklevel=3,
        )
        done, resume = 0, None
    for child in out.iterdir():
        if child.name.startswith("epoch-") and child.name[6:].isdigit() and int(child.name[6:]) > done:
            shutil.rmtree(child)
    _keep_only(out / TRAINER_DIR, resume.name if resume is not None and done < epochs else None)
    return done, resume


def load_lora_model(settings: LESSWarmup, precision: str) -> Any:
    """The base model (bfloat16 weights under bf16 mixed precision, else float32) with seeded LoRA adapters
    (float32) on `settings.lora_targets`."""
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    from .. import embedded

    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise InputError("the LESS warm-up needs peft: pip install 'hf-select[lora]'") from err
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(
            embedded.resolve(settings.model, weights=True), revision=settings.revision, dtype=dtype,
            trust_remote_code=settings.trust_remote_code,
        )  # fmt: skip
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load model {settings.model!r}: {err}") from err
    set_seed(settings.seed)
    try:
        return get_peft_model(model, LoraConfig(**settings.lora_config()))
    except ValueError as err:  # e.g. target modules the model does not have
        raise InputError(f"cannot add LoRA adapters to {settings.model!r}: {err}") from err


def train(
    settings: LESSWarmup, examples: list[Example], out: Path, *, progress: bool = False,
    callbacks: list[Any] | None = None,
) -> list[int]:  # fmt: skip
    """Train (or resume) the warm-up into `out`; returns the epochs trained by this call."""
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from ..select.diverse_evol import _Collator
    from .warmup_lora import precision

    done, resume = resume_point(out, settings.epochs)
    if done >= settings.epochs:
        shutil.rmtree(out / TRAINER_DIR, ignore_errors=True)
        return []
    with warnings.catch_warnings():  # transformers warns about its own deprecated call inside Trainer
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        mixed = precision(settings.dtype)
        model = load_lora_model(settings, mixed)
        tokenizer = settings.load_tokenizer()
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        cuda = torch.cuda.is_available()
        args = TrainingArguments(
            output_dir=str(out / TRAINER_DIR), num_train_epochs=settings.epochs, learning_rate=settings.learning_rate,
            lr_scheduler_type=settings.lr_scheduler, warmup_steps=settings.warmup, weight_decay=settings.weight_decay,
            per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=settings.gradient_accumulation,
            seed=settings.seed, data_seed=settings.seed, bf16=mixed == "bfloat16", use_cpu=not cuda,
            optim="adamw_torch", report_to="none", save_strategy="epoch", logging_strategy="no",
            disable_tqdm=not progress, remove_unused_columns=False, dataloader_num_workers=0,
        )  # fmt: skip
        trainer = Trainer(
            model=model, args=args, train_dataset=examples, data_collator=_Collator(pad_id),
            callbacks=[_callback_class()(out), *(callbacks or [])],
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    shutil.rmtree(out / TRAINER_DIR, ignore_errors=True)
    return list(range(done + 1, settings.epochs + 1))


__all__ = ["TRAINER_DIR", "adam_state_by_name", "load_lora_model", "resume_point", "train"]
