"""Settings from command-line flags and ``BRIX_*`` environment variables.

Every component describes its settings as one frozen dataclass whose fields
carry their documentation. ``load_settings`` turns it into an argparse parser
in which every field is a flag (``--engine-url``) that also reads an
environment variable (``BRIX_ENGINE_URL``, or the field's own ``env`` name).
Precedence: flag, then environment, then the field's default.

Example::

    @dataclass(frozen=True, kw_only=True)
    class Settings:
        port: int = setting(8080, help="Port to listen on.")
        token: str | None = setting(None, help="Bearer token.", env="BRIX_SIDECAR_TOKEN")

    settings = load_settings(Settings, argv, prog="python -m inference.sidecar")
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

_ENV_PREFIX = "BRIX_"


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    env: str | None = None,
    flag: str | None = None,
    choices: Sequence[str] | None = None,
    secret: bool = False,
) -> Any:
    """A settings field: its default, help text, and optionally its env/flag names.

    ``secret`` keeps the value out of ``describe()``. List-typed fields take a
    comma-separated environment value and a repeatable or comma-separated flag.
    """
    metadata = {"help": help, "env": env, "flag": flag, "choices": choices, "secret": secret}
    if isinstance(default, list | dict | set):
        factory_value = default
        return dataclasses.field(
            default_factory=lambda: type(factory_value)(factory_value), metadata=metadata
        )
    return dataclasses.field(default=default, metadata=metadata)


def env_name(field: dataclasses.Field[Any]) -> str:
    return field.metadata.get("env") or _ENV_PREFIX + field.name.upper()


def flag_name(field: dataclasses.Field[Any]) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the scalar or list type, whether None is allowed) of a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported settings type {annotation!r}")
        return args[0], True
    return annotation, False


def _convert(raw: str, typ: Any, name: str) -> Any:
    origin = typing.get_origin(typ)
    if origin in (list, tuple):
        (item,) = typing.get_args(typ)[:1]
        values = [_convert(part.strip(), item, name) for part in raw.split(",") if part.strip()]
        return values if origin is list else tuple(values)
    if typ is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name}: expected a boolean (true/false), got {raw!r}")
    if typ is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{name}: expected an integer, got {raw!r}") from None
    if typ is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{name}: expected a number, got {raw!r}") from None
    return raw


def build_parser(
    cls: type[Any], *, prog: str, description: str | None = None
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description or (cls.__doc__ or "").strip().splitlines()[0],
    )
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        typ, _optional = _base_type(hints[field.name])
        help_text = f"{field.metadata.get('help', '')} [env {env_name(field)}]"
        # The parser's own defaults are None (so the environment can fill in);
        # show the field's real default instead.
        if field.default not in (dataclasses.MISSING, None) and not field.metadata.get("secret"):
            help_text += f" (default: {field.default})"
        elif field.default_factory is not dataclasses.MISSING:
            help_text += f" (default: {field.default_factory()})"
        if typ is bool:
            parser.add_argument(
                flag_name(field), dest=field.name, default=None,
                action=argparse.BooleanOptionalAction, help=help_text,
            )
        else:
            parser.add_argument(
                flag_name(field), dest=field.name, default=None, metavar=field.name.upper(),
                choices=field.metadata.get("choices"), help=help_text,
                action="append" if typing.get_origin(typ) is list else "store",
            )
    return parser


def load_settings(
    cls: type[T],
    argv: Sequence[str] | None = None,
    *,
    prog: str,
    environ: Mapping[str, str] | None = None,
    parser: argparse.ArgumentParser | None = None,
) -> T:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and the environment into ``cls``.

    A bad value from either source exits through argparse with a one-line error
    naming the flag and its environment variable.
    """
    environ = os.environ if environ is None else environ
    parser = parser or build_parser(cls, prog=prog)
    ns = parser.parse_args(argv)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        typ, optional = _base_type(hints[field.name])
        given = getattr(ns, field.name, None)
        label = f"{flag_name(field)} / {env_name(field)}"
        try:
            if given is not None:
                if isinstance(given, list):  # appended list flag, each may hold commas
                    given = ",".join(given)
                values[field.name] = given if typ is bool else _convert(given, typ, label)
            elif env_name(field) in environ:
                raw = environ[env_name(field)]
                if optional and raw == "":
                    values[field.name] = None
                else:
                    values[field.name] = _convert(raw, typ, label)
        except ValueError as exc:
            parser.error(str(exc))
        choices = field.metadata.get("choices")
        if choices and field.name in values and values[field.name] not in choices:
            parser.error(f"{label}: {values[field.name]!r} is not one of {', '.join(choices)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
        raise  # pragma: no cover - parser.error exits


def describe(settings: Any) -> dict[str, Any]:
    """The settings as a dict for logging, with secret fields masked."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        out[field.name] = "***" if field.metadata.get("secret") and value else value
    return out
