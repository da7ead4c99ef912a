"""Engine configuration: the rstream-engine-ce YAML contract, extended for Portway.

Sources, lowest precedence first:

1. built-in defaults (see `describe_defaults()`);
2. a YAML file, from the `path` argument or `RSTREAM_ENGINE_CONFIG`;
3. environment overrides `RSTREAM_ENGINE_<SECTION>__<KEY>` (double underscore = nesting), e.g.
   `RSTREAM_ENGINE_TLS__LISTEN_ADDR=0.0.0.0:443` or `RSTREAM_ENGINE_AUTH__JWT__TOKEN_JWT_SECRET=...`.

Environment values are parsed as YAML scalars (`true`, `30`, empty = null) except for text keys, which
take the value verbatim so that a secret such as `0123` or `yes` survives. Variables under the prefix
without a double underscore (`RSTREAM_ENGINE_CONFIG`, the clients' legacy `RSTREAM_ENGINE_ADDRESS`) are
not overrides and are ignored, unless they look like a mistyped override of a known section
(`RSTREAM_ENGINE_TLS_LISTEN_ADDR`).

Every problem surfaces as `ConfigError` naming the dotted key and where it came from. Loading reads the config
file and nothing else, never mutates its inputs and never exits.
"""

from __future__ import annotations

import copy
import difflib
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from portway.engine.config import EngineConfig
from portway.errors import ConfigError

__all__ = [
    "ALL_KEYS", "CONFIG_ENV", "ENV_PREFIX", "describe_config", "describe_defaults", "load_config", "parse_config",
]

ENV_PREFIX = "RSTREAM_ENGINE_"
CONFIG_ENV = "RSTREAM_ENGINE_CONFIG"


# ------------------------------------------------------------------------------------------------------------
# Schema walking


def _section_type(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_textual(annotation: object) -> bool:
    """True for leaves whose values are text (str, str | None, Literal of strings)."""
    if annotation is str:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return all(isinstance(arg, str) for arg in get_args(annotation))
    if origin is Union or origin is types.UnionType:
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        return bool(args) and all(_is_textual(arg) for arg in args)
    return False


def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, info in model.model_fields.items():
        sub = _section_type(info.annotation)
        keys.extend(_all_keys(sub, f"{prefix}{name}.") if sub else [f"{prefix}{name}"])
    return keys


def _unknown(
    key: str, where: str, model: type[BaseModel], prefix: str, probe: str | None = None
) -> ConfigError:
    """`key` is the full dotted key reported; `probe` (default `key`) is the part matched against `model`."""
    candidates = [f"{prefix}{name}" for name in model.model_fields]
    close = difflib.get_close_matches(probe or key, candidates, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown configuration key '{key}' {where}{hint}")


def _check_file_tree(
    data: Mapping[Any, Any], model: type[BaseModel], prefix: str, where: str
) -> dict[str, Any]:
    """Copy `data` checking every key against the schema; a null section counts as empty."""
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = f"{prefix}{raw_key}"
        if not isinstance(raw_key, str) or raw_key not in model.model_fields:
            raise _unknown(key, where, model, prefix)
        sub = _section_type(model.model_fields[raw_key].annotation)
        if sub is None:
            out[raw_key] = copy.deepcopy(value)
        elif value is None:
            out[raw_key] = {}
        elif isinstance(value, Mapping):
            out[raw_key] = _check_file_tree(value, sub, f"{key}.", where)
        else:
            raise ConfigError(
                f"configuration key '{key}' {where} must be a mapping (a section), not a scalar"
            )
    return out


def _parse_env_value(raw: str, textual: bool) -> object:
    if not raw.strip():
        return None
    if textual:
        return raw
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return raw


def _apply_env(data: dict[str, Any], environ: Mapping[str, str], env_vars: dict[str, str]) -> None:
    """Merge overrides into `data` (our own copy); record dotted key -> variable name in `env_vars`."""
    sections = {name.lower() for name in EngineConfig.model_fields}
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        where = f"(from environment variable {var})"
        if "__" not in rest:
            if rest in sections or any(rest.startswith(f"{s}_") for s in sections):
                raise ConfigError(
                    f"environment variable {var} is not a valid override: "
                    f"use a double underscore between section and key, e.g. RSTREAM_ENGINE_TLS__LISTEN_ADDR"
                )
            continue
        parts = rest.split("__")
        model: type[BaseModel] = EngineConfig
        node = data
        for depth, part in enumerate(parts):
            prefix = ".".join(parts[:depth])
            dotted = ".".join(parts[: depth + 1])
            if part not in model.model_fields:
                raise _unknown(".".join(parts), where, model, f"{prefix}." if prefix else "", dotted)
            annotation = model.model_fields[part].annotation
            sub = _section_type(annotation)
            last = depth == len(parts) - 1
            if sub is None:
                if not last:
                    raise ConfigError(f"unknown configuration key '{'.'.join(parts)}' {where}")
                node[part] = _parse_env_value(environ[var], _is_textual(annotation))
                env_vars[dotted] = var
            else:
                if last:
                    raise ConfigError(
                        f"configuration key '{dotted}' {where} is a section; set one of its keys instead"
                    )
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
                model = sub


def _format_validation(
    error: ValidationError, env_vars: Mapping[str, str], source: str | None
) -> ConfigError:
    """One ConfigError for all problems; values are never echoed (they may be secrets)."""
    problems: list[str] = []
    for item in error.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in item["loc"])
        key = loc or "(top level)"
        if loc in env_vars:
            where = f"(from environment variable {env_vars[loc]})"
        else:
            related = sorted(
                var for dotted, var in env_vars.items() if not loc or dotted.startswith(f"{loc}.")
            )
            origins = [f"in {source}"] if source else []
            if related:
                origins.append(f"environment: {', '.join(related)}")
            where = f"({'; '.join(origins or ['in the configuration'])})"
        reason = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"invalid value for '{key}' {where}: {reason}")
    return ConfigError("; ".join(problems))


def parse_config(
    data: object,
    environ: Mapping[str, str] | None = None,
    *,
    source: str | None = None,
) -> EngineConfig:
    """Validate an already-parsed document (a mapping, or None for empty) plus environment overrides.

    `source` names the document in error messages (e.g. "configuration file /etc/x.yaml").
    """
    label = source or "the configuration"
    where = f"(in {label})"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{label} must be a YAML mapping of sections, not {type(data).__name__}")
    tree = _check_file_tree(data, EngineConfig, "", where)
    env_vars: dict[str, str] = {}
    _apply_env(tree, environ or {}, env_vars)
    try:
        return EngineConfig.model_validate(tree)
    except ValidationError as exc:
        raise _format_validation(exc, env_vars, source) from None


def load_config(path: str | None, environ: Mapping[str, str]) -> EngineConfig:
    """Load the configuration from `path` (else `RSTREAM_ENGINE_CONFIG`, else none) plus env overrides."""
    chosen = path if path else (environ.get(CONFIG_ENV) or None)
    data: object = None
    source: str | None = None
    if chosen is not None:
        source = f"configuration file {chosen}"
        try:
            with open(chosen, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            raise ConfigError(f"{source} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigError(f"{source} cannot be read: {reason}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or "invalid YAML"
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"{source} is not valid YAML{at}: {problem}") from None
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{source} must be a YAML mapping of sections, not {type(data).__name__}")
    return parse_config(data, environ, source=source)


# ------------------------------------------------------------------------------------------------------------
# Defaults document


def _yaml_scalar(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _describe(model: type[BaseModel], instance: BaseModel, indent: int, lines: list[str]) -> None:
    pad = "  " * indent
    for name, info in model.model_fields.items():
        sub = _section_type(info.annotation)
        if sub is not None:
            doc = (sub.__doc__ or "").strip().splitlines()
            if doc:
                lines.append(f"{pad}# {doc[0]}")
            lines.append(f"{pad}{name}:")
            _describe(sub, getattr(instance, name), indent + 1, lines)
            if indent == 0:
                lines.append("")
            continue
        if info.description:
            lines.append(f"{pad}# {info.description}")
        lines.append(f"{pad}{name}: {_yaml_scalar(getattr(instance, name))}")


def describe_config(config: EngineConfig, header: tuple[str, ...] = ()) -> str:
    """`config` as a commented YAML document listing every key; loading it yields `config` again."""
    lines = [
        "# Portway engine configuration (compatible with rstream-engine-ce).",
        *(f"# {line}" if line else "#" for line in header),
        "# Environment overrides: RSTREAM_ENGINE_<SECTION>__<KEY>, e.g. RSTREAM_ENGINE_TLS__LISTEN_ADDR.",
        "",
    ]
    _describe(EngineConfig, config, 0, lines)
    return "\n".join(lines)


def describe_defaults() -> str:
    """A commented YAML document listing every key with its default; loading it yields the defaults."""
    return describe_config(EngineConfig(), ("Every key is optional; the values below are the defaults.",))


ALL_KEYS: tuple[str, ...] = tuple(_all_keys(EngineConfig))
"""Every dotted leaf key, in schema order."""
