"""`hf-select score` options, generated from the scorers' dataclass fields (with `hf_select.options`).

Every field of every scorer in `SCORERS` is a flag (`--max-length`, `--shift/--no-shift`, `--timeout`, ...),
documented by the string under the field; a flag the chosen method has no field for is refused by name.
Tuple fields take comma-separated values (`--extra-models a,b`, `--columns question,answer`). Left out:
`token` (a secret would be written into the recorded command: TGI reads the stored Hub token, set `HF_TOKEN`)
and `prompts` (sentences with commas in them: set them from Python).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_scorer_flags(parser)
    >>> args = parser.parse_args(["--tokenizer", "embedded:smollm2", "--columns", "q,a", "--format", "prompt_response"])
    >>> args.method = "token-length"
    >>> scorer_from_args(args).columns
    ('q', 'a')
"""

from __future__ import annotations

import argparse
import typing
from typing import Any, get_args, get_origin

from ..errors import InputError
from ..options import Option, add_flags, build, field_options, given
from . import SCORERS
from .base import Scorer

HIDDEN = frozenset({"token", "prompts"})


def scorer_options(cls: type[Scorer]) -> list[Option]:
    return [option for option in field_options(cls) if option.name not in HIDDEN]


def add_scorer_flags(parser: argparse.ArgumentParser) -> None:
    """Every scorer's fields as flags of `parser` (each once), each documented by its field's docstring and
    the methods that take it."""
    options = [(cls.method, option) for cls in SCORERS.values() for option in scorer_options(cls)]
    add_flags(parser, [option for _, option in options])
    takers: dict[str, list[str]] = {}
    docs: dict[str, str] = {}
    for method, option in options:
        takers.setdefault(option.flags[0], []).append(method)
        docs[option.flags[0]] = docs.get(option.flags[0]) or option.help
    for action in parser._actions:  # add_flags adds bare flags; say what each is for
        name = action.option_strings[0] if action.option_strings else None
        if name in takers:
            methods = "all methods" if len(takers[name]) == len(SCORERS) else ", ".join(sorted(takers[name]))
            kind = next(o for _, o in options if o.flags[0] == name).describe_type().replace("tuple", "comma-separated")
            action.help = f"{docs[name]} [{kind}; {methods}]".replace("%", "%%").strip()


def _tuple_item(annotation: Any) -> type | None:
    for member in (annotation, *get_args(annotation)):
        if get_origin(member) is tuple:
            return (get_args(member) or (str,))[0]
    return None


def scorer_from_args(args: argparse.Namespace) -> Scorer:
    """The scorer named by `args.method`, configured from the flags given that are its fields."""
    cls = SCORERS[args.method]
    options = scorer_options(cls)
    values, foreign = given(args, options)
    if "--model" in foreign and "model" not in values and "tokenizer" in {o.name for o in options}:
        foreign.remove("--model")  # token-length counts with the model's tokenizer
        values.setdefault("tokenizer", getattr(args, "flag:model"))
    if foreign:
        raise InputError(f"--method {args.method} does not take {', '.join(foreign)}")
    if values.get("columns") and not values.get("format"):
        raise InputError("--columns needs --format")
    hints = typing.get_type_hints(cls)
    for name, raw in list(values.items()):
        item = _tuple_item(hints[name])
        if item is not None and isinstance(raw, str):
            try:
                values[name] = tuple(item(part.strip()) for part in raw.split(",") if part.strip())
            except ValueError as err:
                raise InputError(f"--{name.replace('_', '-')} takes comma-separated {item.__name__}s") from err
    return build(cls, values, what=args.method)
