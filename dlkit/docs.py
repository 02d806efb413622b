"""The command reference in docs/commands/, generated from the config dataclasses.

Every option is defined once, in its command's config (`dlkit.core.config`), so the reference is
written from there rather than by hand: one page per command (what it does, from the config's
docstring; a synopsis; the examples the docstring carries; a table of its arguments and
options with their type, default, bounds or choices and help; what `--resume` compares) and
an index. The few options the CLI adds to every command (`--config`, `--print-config`, the
global `--debug`) are read from the Typer app itself.

    python -m dlkit.docs            # rewrite docs/commands/ (of the checkout it runs from)
    python -m dlkit.docs --check    # exit 1 naming the pages that differ from the configs

tests/test_docs.py runs the same comparison. Output is deterministic (no dates, no
machine-dependent values). Imports the configs and Typer, never TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import re
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

from dlkit.core.config import (
    Config,
    TrainConfig,
    base_type,
    cli_name,
    describe_bounds,
    field_types,
    help_order,
    spec_of,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "commands"
REGENERATE = "python -m dlkit.docs"
WIDTH = 100  # prose is wrapped at the project's line length; tables are one line per row
NOTICE = (f"<!-- Generated from the command's config by `{REGENERATE}`: edit the config, "
          "not this page. -->")
NOT_SET = "not set"
_DEFAULT_IN_HELP = re.compile(r"\s*\[default: (?P<default>[^\]]*)\]")
_GROUPS = {1: "Options", 2: "Common options", 3: "Output options"}
_GROUP_INTRO = {
    2: "Shared with other commands, under the same name and bounds everywhere (each is defined "
       "once); the default, and at times the help, are this command's.",
    3: "Every command takes these.",
}


# ---------------------------------------------------------------------------------------------
# The pages


def pages() -> dict[str, str]:
    """Every page of the reference: {file name: Markdown text}."""
    commands = _commands()
    out = {"index.md": index_page(commands)}
    for config_type in commands:
        out[f"{config_type.COMMAND}.md"] = command_page(config_type)
    return out


def _commands() -> list[type[Config]]:
    """The CLI's commands, in its own order (`dlkit.cli.COMMANDS`)."""
    from dlkit.cli import COMMANDS

    return [config_type for config_type, _, _ in COMMANDS]


def index_page(commands: list[type[Config]]) -> str:
    """The list of commands with what each does, the global options and how to read a page."""
    lines = ["# Command reference", "", NOTICE, "",
             _wrap("One page per command, generated from the config dataclass that defines its "
                   "options, so it always matches `dlkit CMD --help`. The manual (what the "
                   "commands are for, the contract they keep, recipes) starts at "
                   "[docs/README.md](../README.md)."),
             "", "| command | what it does |", "| --- | --- |"]
    for config_type in commands:
        name = config_type.COMMAND
        lines.append(f"| [`dlkit {name}`]({name}.md) | {_cell(_summary(config_type))} |")
    lines += ["", "## Global options", "",
              "Given before the command (`dlkit --debug train-mnist ...`).", "",
              "| option | help |", "| --- | --- |"]
    lines += [f"| {_names(opts)} | {_cell(text)} |" for opts, text in _global_options()]
    lines += ["", "## Reading a page", "", _wrap(
        "**type**: `integer`, `number` (a float), `text`, `path`, `switch` (on when given; "
        "one listed with a `--no-` form is turned off by it), `choice` (one of the listed "
        "values). **default**: what an "
        f"option left out becomes; *{NOT_SET}* means the option has no value unless given "
        "(the help says what happens then); *required* means it must be given. **bounds / "
        "choices**: a value outside them is refused before anything runs (exit 2). Every "
        "option can also be given in a `--config` file, by its long name without the dashes "
        "(`learning-rate = 0.004`)."), ""]
    return "\n".join(lines)


def command_page(config_type: type[Config]) -> str:
    """One command's page: what it does, synopsis, examples, arguments, options, resume."""
    name = config_type.COMMAND
    description, examples = _docstring(config_type)
    lines = [f"# dlkit {name}", "", NOTICE, ""]
    for paragraph in description:
        lines += [_wrap(paragraph), ""]
    lines += ["```text", _synopsis(config_type), "```", ""]
    if examples:
        lines += ["## Examples", "", "```console", *(f"$ {e}" for e in examples), "```", ""]
    lines += _arguments_section(config_type)
    for group, title in _GROUPS.items():
        lines += _options_section(config_type, group, title)
    lines += _settings_section(name)
    if issubclass(config_type, TrainConfig):
        lines += _resume_section(config_type)
    lines.append("See also: [all commands](index.md).")
    return "\n".join(lines) + "\n"


def _docstring(config_type: type[Config]) -> tuple[list[str], list[str]]:
    """The config's docstring as (description paragraphs, example command lines): paragraphs
    that start with "Example:" are examples, the others say what the command does."""
    description, examples = [], []
    for paragraph in inspect.cleandoc(config_type.__doc__ or "").split("\n\n"):
        text = " ".join(paragraph.split())
        if text.startswith("Example:"):
            examples.append(text.removeprefix("Example:").strip())
        elif text:
            description.append(text)
    return description, examples


def _summary(config_type: type[Config]) -> str:
    """The first paragraph of the config's docstring (what `dlkit --help` lists)."""
    description, _ = _docstring(config_type)
    return description[0] if description else ""


def _synopsis(config_type: type[Config]) -> str:
    words = [f"dlkit {config_type.COMMAND}", "[OPTIONS]"]
    types = field_types(config_type)
    for field in help_order(config_type):
        if spec_of(field).argument:
            words.append(_argument_name(field, types[field.name]))
    return " ".join(words)


def _argument_name(field: dataclasses.Field, annotation: Any) -> str:
    name = spec_of(field).metavar or field.name.upper()
    repeated = _is_list(annotation) and not name.endswith("...")
    return name + ("..." if repeated else "")


# ---------------------------------------------------------------------------------------------
# The tables


def _arguments_section(config_type: type[Config]) -> list[str]:
    types = field_types(config_type)
    rows = [f"| `{_argument_name(f, types[f.name])}` | {_type_name(types[f.name])} | "
            f"{_cell(spec_of(f).help)} |"
            for f in help_order(config_type) if spec_of(f).argument]
    if not rows:
        return []
    return ["## Arguments", "", "| argument | type | help |", "| --- | --- | --- |", *rows, ""]


def _options_section(config_type: type[Config], group: int, title: str) -> list[str]:
    types = field_types(config_type)
    fields = [f for f in help_order(config_type)
              if not spec_of(f).argument and not spec_of(f).hidden and spec_of(f).group == group]
    if not fields:
        return []
    lines = [f"## {title}", ""]
    if group in _GROUP_INTRO:
        lines += [_wrap(_GROUP_INTRO[group]), ""]
    lines += ["| option | type | default | bounds / choices | help |",
              "| --- | --- | --- | --- | --- |"]
    lines += [option_row(field, types[field.name]) for field in fields]
    return [*lines, ""]


def option_row(field: dataclasses.Field, annotation: Any) -> str:
    """One option as a table row: names, type, default, bounds or choices, help."""
    from dlkit.options import declarations

    spec = spec_of(field)
    help_text, default_in_help = _split_default(spec.help)
    names = [n for decl in declarations(field, annotation) for n in decl.split("/")]
    default = default_in_help or _default_text(field, spec)
    cells = [_names(names), _type_name(annotation), default, _limits(annotation, spec), help_text]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _split_default(help_text: str) -> tuple[str, str | None]:
    """Help that states its own default ("... [default: 5 for all archs].") as (the help
    without it, that default): such options have no single default value."""
    match = _DEFAULT_IN_HELP.search(help_text)
    if match is None:
        return help_text, None
    return (help_text[:match.start()] + help_text[match.end():]).strip(), match["default"]


def _default_text(field: dataclasses.Field, spec: Any) -> str:
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        return "*required*"
    value = (field.default if field.default is not dataclasses.MISSING
             else field.default_factory())
    if value is None:
        return f"*{NOT_SET}*"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value!r}`" if isinstance(value, str) and value == "" else f"`{value}`"


def _limits(annotation: Any, spec: Any) -> str:
    kind, count = _shape(annotation)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return ", ".join(f"`{member.value}`" for member in kind)
    bounds = describe_bounds(spec)
    return f"each {bounds}" if bounds and count is not None else bounds


def _type_name(annotation: Any) -> str:
    kind, count = _shape(annotation)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        name = "choice"
    else:
        name = {bool: "switch", int: "integer", float: "number", str: "text",
                Path: "path"}.get(kind, getattr(kind, "__name__", str(kind)))
    if count is None:
        return name
    return f"{count} {name}s" if count else f"{name}, repeated"


def _shape(annotation: Any) -> tuple[Any, int | None]:
    """(element type, how many values): None for one value, 0 for any number (`list[str]`), n
    for a fixed-length tuple (`tuple[int, int] | None` is two integers)."""
    arms = [a for a in (typing.get_args(annotation) if isinstance(annotation, types.UnionType)
                        else (annotation,)) if a is not type(None)]
    arm = arms[0]
    if typing.get_origin(arm) is list:
        return typing.get_args(arm)[0], 0
    if typing.get_origin(arm) is tuple:
        args = typing.get_args(arm)
        return args[0], len(args)
    return base_type(arm), None


def _is_list(annotation: Any) -> bool:
    return _shape(annotation)[1] is not None


def _names(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _cell(text: str) -> str:
    """Text that stays in its table cell, as written."""
    return _escaped(" ".join(text.split())).replace("|", "\\|")


def _wrap(text: str) -> str:
    """A paragraph of prose, as written, wrapped."""
    return textwrap.fill(_escaped(text), WIDTH, break_long_words=False, break_on_hyphens=False)


def _escaped(text: str) -> str:
    """Help text as Markdown shows it literally: outside `code spans`, a "<" that would open
    an HTML tag (`path<TAB>label`) is escaped."""
    parts = text.split("`")
    parts[::2] = [re.sub(r"<(?=[A-Za-z/!?])", r"\\<", part) for part in parts[::2]]
    return "`".join(parts)


# ---------------------------------------------------------------------------------------------
# What the CLI adds to every command, read from the Typer app


def _click_group() -> Any:
    import typer

    from dlkit.cli import app

    return typer.main.get_command(app)


def _settings_section(command: str) -> list[str]:
    """The options the CLI adds beside the config's (`--config`, `--print-config`, `--help`)."""
    group = _click_group()
    configured = {f.name for f in dataclasses.fields(_config_of(command))}
    rows = [f"| {_names(names)} | {_cell(text)} |"
            for name, names, text in _click_options(group.commands[command])
            if name not in configured]
    return ["## Settings", "", "| option | help |", "| --- | --- |", *rows, ""]


def _global_options() -> list[tuple[list[str], str]]:
    return [(names, text) for _, names, text in _click_options(_click_group())]


def _click_options(command: Any) -> list[tuple[str, list[str], str]]:
    """(name, spellings, help) of a Click command's options, `--help` included (spelt as the
    app's context settings say). Typer vendors Click in a private module, so options are told
    by their public `param_type_name`."""
    root = _click_group()
    context = root.context_class(root, **root.context_settings)
    if command is not root:
        context = command.context_class(command, parent=context, **command.context_settings)
    params = command.get_params(context)
    return [(p.name, _long_first([*p.opts, *p.secondary_opts]), p.help or "") for p in params
            if getattr(p, "param_type_name", "") == "option"]


def _long_first(names: list[str]) -> list[str]:
    """`--help`, `-h`, as the config options are listed (Click builds some from a set, whose
    order changes from run to run)."""
    return sorted(names, key=lambda name: (not name.startswith("--"), name))


def _config_of(command: str) -> type[Config]:
    return next(c for c in _commands() if c.COMMAND == command)


def _resume_section(config_type: type[TrainConfig]) -> list[str]:
    """What a checkpoint must match for `--resume` (the fields with `resume=True`)."""
    fields = [f for f in help_order(config_type)
              if not spec_of(f).argument and f.name != "resume"]
    compared = ", ".join(f"`{cli_name(f)}`" for f in fields if spec_of(f).resume)
    free = ", ".join(f"`{cli_name(f)}`" for f in fields if not spec_of(f).resume)
    text = (f"`--resume` continues an interrupted run only when these options have the values "
            f"it was started with, and its training data is the same: {compared}. These may "
            f"change from one session to the next: {free}.")
    return ["## Resuming", "", _wrap(text), ""]


# ---------------------------------------------------------------------------------------------
# Writing and checking


def write(folder: Path) -> list[Path]:
    """Write every page into `folder` (atomically, each), remove pages of commands that are
    gone, and return the pages written."""
    from dlkit.core.files import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    rendered = pages()
    for stale_page in sorted(folder.glob("*.md")):
        if stale_page.name not in rendered:
            stale_page.unlink()
    return [write_atomic(folder / name, text) for name, text in rendered.items()]


def differences(folder: Path) -> list[str]:
    """What differs between `folder` and freshly generated pages: one line per page that is
    missing, changed, or left over from a command that is gone."""
    rendered = pages()
    found = {p.name for p in folder.glob("*.md")} if folder.is_dir() else set()
    out = [f"{name}: missing" for name in sorted(set(rendered) - found)]
    out += [f"{name}: no such command any more" for name in sorted(found - set(rendered))]
    for name in sorted(set(rendered) & found):
        if (folder / name).read_text(encoding="utf-8") != rendered[name]:
            out.append(f"{name}: differs from the configs")
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m dlkit.docs [--check] [--out DIR]`."""
    parser = argparse.ArgumentParser(prog="python -m dlkit.docs",
                                     description="Write the command reference from the configs.")
    parser.add_argument("--out", type=Path, default=DOCS, help=f"folder (default {DOCS})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a page differs from the configs")
    args = parser.parse_args(argv)
    if args.check:
        diff = differences(args.out)
        for line in diff:
            print(args.out / line, file=sys.stderr)
        if diff:
            print(f"error: the command reference is out of date; run `{REGENERATE}` to update "
                  "it", file=sys.stderr)
        return 1 if diff else 0
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
