"""Flags built from declared settings: help, choices and parse-time checks from field metadata."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, get_args, get_type_hints

from harp_plugin.pipeline.config import RunConfig, parse_setting
from harp_plugin.pipeline.settings import describe_choices, field_help
from harp_plugin.registry import get_registry


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`RunConfig` field, checked as it is parsed (before any work)."""
    hints = get_type_hints(RunConfig)
    for spec in dataclasses.fields(RunConfig):
        flag = "--" + spec.name.replace("_", "-")
        help_text = _help(spec)
        if hints[spec.name] is bool:
            parser.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        parser.add_argument(
            flag, dest=spec.name, default=None, type=setting_type(spec.name),
            metavar=_metavar(spec, hints[spec.name]), help=help_text,
        )


def setting_type(name: str) -> Callable[[str], Any]:
    """An argparse ``type`` converting and checking the :class:`RunConfig` setting ``name``."""
    return _checked(lambda text: parse_setting(name, text))


def registry_name(kind: str) -> Callable[[str], str]:
    """An argparse ``type`` accepting only names registered for ``kind`` (plugins' included)."""
    def check(text: str) -> str:
        get_registry().get(kind, text)
        return text

    return _checked(check)


def choices_help(help_text: str, choices: tuple[str, ...] | list[str], default: Any = None) -> str:
    """``help_text`` followed by the accepted names and the default, %-escaped for argparse."""
    parts = [help_text]
    if choices:
        parts.append(f"one of: {', '.join(choices)}")
    if default not in (None, ""):
        parts.append(f"default: {default}")
    return "; ".join(parts).replace("%", "%%")


def _help(spec: dataclasses.Field) -> str:
    default = spec.default
    if isinstance(default, tuple):
        default = ",".join(map(str, default)) or "none"
    elif isinstance(default, bool):
        default = "on" if default else "off"
    text = field_help(spec) or "(undocumented setting)"
    valid = spec.metadata.get("valid")
    if valid is not None:
        text += f"; must be {valid.describe()}"
    fixed = spec.metadata.get("choices")  # already in the metavar
    return choices_help(text, () if fixed else describe_choices(spec), default)


def _metavar(spec: dataclasses.Field, hint: Any) -> str:
    if spec.metadata.get("choices"):
        return "{" + ",".join(spec.metadata["choices"]) + "}"
    if spec.metadata.get("registry"):
        return "NAMES" if isinstance(spec.default, tuple) else "NAME"
    if isinstance(spec.default, tuple):
        return "LIST"
    kinds = set(get_args(hint)) or {hint}
    if int in kinds:
        return "N"
    if float in kinds:
        return "X"
    return "TEXT"


def _checked(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse reports only ``ArgumentTypeError`` messages verbatim; route ours through it."""
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except (ValueError, KeyError) as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    return parse
