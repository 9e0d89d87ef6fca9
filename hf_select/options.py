"""Command-line options generated from a configuration dataclass's fields (a selector's), never written twice.

Each init field becomes `--field-name` (plus any `aliases` in the field's metadata), documented by the
string under the field; booleans get `--name/--no-name`. Values arrive as text and are converted by the
field's type: `int`, `float`, `str`, `Literal[...]` choices, `list[int]`/`list[str]` (comma-separated),
`int | list[int]` (a number, or comma-separated numbers), and the budget (kept as text for `Budget.parse`).

Example:
    >>> from hf_select.select import TopK
    >>> [option.flags for option in field_options(TopK)][:3]
    [('--budget',), ('--column',), ('--largest',)]
    >>> build(TopK, {"column": "n_tokens", "budget": "10", "largest": False})
    TopK(token_column='n_tokens', budget='10', column='n_tokens', largest=False, min_value=None, max_value=None)
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from .errors import InputError


@dataclass(frozen=True)
class Option:
    """One field as a command-line option."""

    name: str
    flags: tuple[str, ...]
    annotation: Any
    required: bool
    default: Any
    help: str

    @property
    def is_bool(self) -> bool:
        return self.annotation is bool

    def describe_type(self) -> str:
        if self.is_bool:
            return "flag"
        if self.name == "budget":
            return "a count, a fraction or tokens"
        choices = _choices(self.annotation)
        if choices:
            return " | ".join(map(str, choices))
        return _type_name(self.annotation)


def field_options(cls: type) -> list[Option]:
    """The command-line options of `cls`: its init fields, except those marked `cli: False` or typed as
    callables."""
    from .select.base import FIELD_ORDER, field_docs

    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    options = []
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("cli", True) is False or _is_callable(hints[f.name]):
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        flags = (flag(f.name), *f.metadata.get("aliases", ()))
        options.append(Option(f.name, flags, hints[f.name], required, default, docs.get(f.name, "")))
    return sorted(options, key=lambda o: FIELD_ORDER.get(o.name, 1))


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """Add one class's `options` to `parser`, with their defaults."""
    for option in options:
        kwargs: dict[str, Any] = {"dest": option.name, "help": _help(option)}
        if not option.required:
            kwargs["default"] = option.default
        if option.is_bool:
            parser.add_argument(*option.flags, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            parser.add_argument(*option.flags, metavar=option.name.upper(), **kwargs)


def add_flags(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """Add every flag of `options` (several classes' options) to `parser`, once each, as text (or a boolean
    flag) stored under the flag's own name and absent when not given: `given(args, options)` then reads
    which of one class's options were given."""
    seen: set[str] = set()
    for option in options:
        for name in option.flags:
            if name in seen:
                continue
            seen.add(name)
            dest = _dest(name)
            if option.is_bool:
                parser.add_argument(name, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
            else:
                parser.add_argument(name, dest=dest, metavar=option.name.upper(), default=argparse.SUPPRESS)


def given(args: argparse.Namespace, options: Iterable[Option]) -> tuple[dict[str, Any], list[str]]:
    """({field: value} of `options` given in `args` (parsed with `add_flags`), [flags given that none of
    `options` has])."""
    values: dict[str, Any] = {}
    own: set[str] = set()
    for option in options:
        own.update(option.flags)
        for name in option.flags:
            if hasattr(args, _dest(name)):
                values[option.name] = getattr(args, _dest(name))
    present = [name for name in vars(args) if name.startswith(_PREFIX)]
    foreign = sorted("--" + name[len(_PREFIX) :] for name in present if "--" + name[len(_PREFIX) :] not in own)
    return values, foreign


_PREFIX = "flag:"


def _dest(name: str) -> str:
    return _PREFIX + name.lstrip("-")


def build(cls: type, given: Mapping[str, Any], *, what: str | None = None) -> Any:
    """`cls(**values)` from command-line text: each value converted by its field's type; a missing required
    field or a value of the wrong type is an `InputError` naming the option."""
    what = what or getattr(cls, "method", cls.__name__)
    options = {option.name: option for option in field_options(cls)}
    values: dict[str, Any] = {}
    for name, raw in given.items():
        option = options[name]
        values[name] = raw if option.is_bool or not isinstance(raw, str) else convert(option, raw)
    missing = [options[name].flags[0] for name in options if options[name].required and name not in values]
    if missing:
        raise InputError(f"--method {what} needs {', '.join(missing)}")
    try:
        return cls(**values)
    except TypeError as err:
        raise InputError(f"invalid options for --method {what}: {err}") from err


def convert(option: Option, raw: str) -> Any:
    """Command-line text to the field's type (see the module doc)."""
    annotation = option.annotation
    if option.name == "budget":
        return raw  # Budget.parse reads it, with its own errors
    choices = _choices(annotation)
    if choices:
        if raw not in choices:
            raise InputError(f"{option.flags[0]} must be one of {', '.join(map(str, choices))}, got {raw!r}")
        return raw
    kinds = _kinds(annotation)
    try:
        if list in kinds and ("," in raw or not ({int, float, str} & kinds)):
            item = _list_item(annotation)
            return [item(part.strip()) for part in raw.split(",") if part.strip()]
        for kind in (int, float, str):
            if kind in kinds:
                return kind(raw)
    except ValueError as err:
        raise InputError(f"{option.flags[0]} takes {option.describe_type()}, got {raw!r}") from err
    raise InputError(f"{option.flags[0]} cannot be given on the command line")


def _help(option: Option) -> str:
    text = (option.help or "").replace("%", "%%")  # argparse formats help with %
    if option.required:
        return f"{text} (required)".strip()
    if option.default is not None and not option.is_bool:
        return f"{text} (default: {option.default})".strip()
    return text


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(a for a in get_args(annotation) if a is not type(None))
    return (annotation,)


def _choices(annotation: Any) -> tuple[Any, ...]:
    members = _members(annotation)
    if len(members) == 1 and get_origin(members[0]) is Literal:
        return get_args(members[0])
    return ()


def _kinds(annotation: Any) -> set[type]:
    return {get_origin(m) or m for m in _members(annotation)}


def _list_item(annotation: Any) -> type:
    for member in _members(annotation):
        if get_origin(member) is list:
            return (get_args(member) or (str,))[0]
    return str


def _is_callable(annotation: Any) -> bool:
    return any(get_origin(m) is abc.Callable for m in _members(annotation))


def _type_name(annotation: Any) -> str:
    names = []
    for member in _members(annotation):
        origin = get_origin(member)
        if origin is list:
            names.append(f"comma-separated {_list_item(member).__name__}s")
        else:
            names.append(getattr(origin or member, "__name__", str(member)))
    return " or ".join(names)


__all__ = ["Option", "add_flags", "add_options", "build", "convert", "field_options", "flag", "given"]
