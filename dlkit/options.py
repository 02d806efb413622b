"""The Typer side of the configs: each command's parameters are built from its config dataclass.

`parameters(Config)` turns every `opt()` field into an `Annotated[type, typer.Option(...)]` (or
`typer.Argument`) parameter: the field's name gives `--field-name`, its type the parsing (an
`Enum` type gives the choices), its `Opt` the help, short flags and bounds (closed bounds become
Typer's `min=`/`max=`, shown in --help; open ones and NaN are checked by the config itself), its
default the default. `command_function` wraps a body around them with that signature, so Typer
sees an ordinary command and nothing about an option is written twice.

Imports Typer, not TensorFlow: `dlkit --help` builds every command from here.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dlkit.core.config import (
    EMPTY_PATH,
    Config,
    base_type,
    cli_name,
    field_types,
    help_order,
    plain,
    read_config_file,
    spec_of,
)


def parameters(config_type: type[Config]) -> list[inspect.Parameter]:
    """The command's parameters, one per config field: arguments, then the command's own
    options, the shared training options and the output options, each in the config's
    order."""
    types = field_types(config_type)
    params = []
    for field in help_order(config_type):
        spec = spec_of(field)
        annotation = types[field.name]
        info = (_argument(field, spec, annotation) if spec.argument
                else _option(field, spec, annotation))
        default = (inspect.Parameter.empty if field.default is dataclasses.MISSING
                   and field.default_factory is dataclasses.MISSING
                   else field.default if field.default is not dataclasses.MISSING
                   else field.default_factory())
        params.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=default, annotation=Annotated[annotation, info]))
    return params


def declarations(field: dataclasses.Field, annotation: Any) -> list[str]:
    """The option's spellings as Typer declares them: `--name` (`--name/--no-name` for a
    switch that is not off by default: None lets the recipe decide), then its extra flags."""
    spec = spec_of(field)
    name = cli_name(field)
    if base_type(annotation) is bool and field.default is not False:
        name = f"{name}/--no-{name[2:]}"
    return [name, *spec.flags]


def _option(field: dataclasses.Field, spec: Any, annotation: Any) -> Any:
    decls = declarations(field, annotation)
    bounds = {}
    if base_type(annotation) in (int, float):
        if spec.min is not None and not spec.min_open:
            bounds["min"] = spec.min if base_type(annotation) is float else int(spec.min)
        if spec.max is not None and not spec.max_open:
            bounds["max"] = spec.max if base_type(annotation) is float else int(spec.max)
    metavar = spec.metavar
    if _is_path(annotation):  # parsed by `parse_path`, whose type Typer would show (<Path>)
        metavar = metavar or "<path>"
    return typer.Option(*decls, help=_plain(spec.help), metavar=metavar,
                        show_default=spec.show_default, hidden=spec.hidden,
                        parser=parse_path if _is_path(annotation) else None, **bounds)


def _argument(field: dataclasses.Field, spec: Any, annotation: Any) -> Any:
    return typer.Argument(help=_plain(spec.help), metavar=spec.metavar, show_default=False,
                          parser=parse_path if _is_path(annotation) else None)


def _plain(text: str) -> str:
    """Help text shown as written: Typer renders help as rich markup, where "[default: 3e-3]"
    would be taken for a tag and vanish."""
    from rich.markup import escape

    return escape(text)


def _is_path(annotation: Any) -> bool:
    return base_type(annotation) is Path


def parse_path(value: str | Path) -> Path:
    """A path parameter's value, seen as typed: an empty one is refused, as a config file
    refuses it (Typer would make "" Path("."), the working directory)."""
    if isinstance(value, Path):  # a default
        return value
    if value == "":  # Typer's line names the option: "Invalid value for '--x': ..."
        raise typer.BadParameter(EMPTY_PATH)
    return Path(value)


def command_function(config_type: type[Config],
                     body: Callable[[type[Config], dict[str, Any], bool], int],
                     guard: Callable[[Callable[[], Any]], int]) -> Callable[..., None]:
    """A function with the config's parameters, plus `--config FILE.toml` and
    `--print-config`, that hands the parsed values to `body(config_type, values,
    print_config)`; a non-zero result becomes the exit code.

    `--config` is read first (an eager option) and becomes the command's default map, so its
    keys (the long option names) act as defaults and options given on the command line win.
    It is read through `guard` (the CLI's error mapping, `dlkit.cli.run_command`), so any
    failure to read it is the same one `error:` line and exit code as a command's."""

    def load(ctx: typer.Context, value: Path | None) -> Path | None:
        if value is not None:
            found: dict[str, Any] = {}
            code = guard(lambda: found.update(read_config_file(value, config_type)))
            if code:
                raise typer.Exit(code)
            ctx.default_map = {**(ctx.default_map or {}),
                               **{name: plain(v) for name, v in found.items()}}
        return value

    config_help = ("TOML file of settings (keys are the long option names, e.g. "
                   "learning-rate = 0.004); options on the command line win.")
    params = [*parameters(config_type),
              inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, default=None,
                                annotation=Annotated[Path | None, typer.Option(
                                    "--config", help=config_help, is_eager=True,
                                    callback=load, rich_help_panel="Settings",
                                    parser=parse_path, metavar="<path>")]),
              inspect.Parameter("print_config", inspect.Parameter.KEYWORD_ONLY, default=False,
                                annotation=Annotated[bool, typer.Option(
                                    "--print-config", help="Print the resolved settings as "
                                    "TOML and exit (a start for --config).",
                                    rich_help_panel="Settings")])]

    def command(**values: Any) -> None:
        values.pop("config_file")
        code = body(config_type, values, values.pop("print_config"))
        if code:
            raise typer.Exit(code)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = _reflowed(inspect.cleandoc(config_type.__doc__ or ""))
    command.__name__ = config_type.COMMAND.replace("-", "_")
    return command


def _reflowed(doc: str) -> str:
    """A docstring with each paragraph on one line: rich keeps line breaks, so the source's
    wrapping would break `--help` lines at odd places on a narrow terminal."""
    return "\n\n".join(" ".join(part.split()) for part in doc.split("\n\n"))
