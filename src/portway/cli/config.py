"""The CLI's configuration file: rstream's schema (`version`, `defaults.context`, `contexts[]` with engine,
auth and transport), so an rstream config file works as it is and ours reads like theirs (§5).

Fields Portway does not use (project endpoints, proxies, DNS…) are kept as they are and written back
unchanged, so editing a context never loses what another client put there. A save goes to a temporary
file that is then renamed over the old one, with mode 0600, because the file holds tokens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from portway.errors import ConfigError
from portway.files import write_atomic

DEFAULT_PATH = Path("~/.portway/config.yaml")


class _Model(BaseModel):
    # Unknown keys are kept (rstream's proxy, bind, dns, projectEndpoint…) and saved back as they were.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TokenStorage(_Model):
    kind: str = "inline"
    value: str | None = None


class TokenAuth(_Model):
    storage: TokenStorage | None = None
    file: str | None = Field(default=None, description="Portway: read the token from this file.")


class Auth(_Model):
    token: TokenAuth | None = None


class EngineTls(_Model):
    ca_file: str | None = Field(default=None, alias="caFile")
    server_name: str | None = Field(default=None, alias="serverName")
    insecure_skip_verify: bool = Field(default=False, alias="insecureSkipVerify")


class Transport(_Model):
    mode: str | None = None
    tls: EngineTls | None = None


class Context(_Model):
    name: str = Field(min_length=1)
    engine: str | None = None
    auth: Auth | None = None
    transport: Transport | None = None

    def token(self) -> str | None:
        """The context's token: inline, or read from its file (a missing file is an error naming it)."""
        token = self.auth.token if self.auth is not None else None
        if token is None:
            return None
        if token.storage is not None and token.storage.value:
            if token.storage.kind != "inline":
                raise ConfigError(f"context {self.name!r}: token storage {token.storage.kind!r} is not supported "
                                  "by portway (use inline or a token file)")
            return token.storage.value
        if token.file:
            try:
                return Path(token.file).expanduser().read_text().strip()
            except OSError as error:
                raise ConfigError(f"context {self.name!r}: cannot read token file {token.file}: {error.strerror}") \
                    from None
        return None


class DefaultContext(_Model):
    name: str | None = None


class Defaults(_Model):
    context: DefaultContext | None = None


class Config(_Model):
    version: int = 1
    defaults: Defaults | None = None
    contexts: list[Context] = Field(default_factory=list)

    def find(self, name: str) -> Context | None:
        return next((c for c in self.contexts if c.name == name), None)

    @property
    def default_name(self) -> str | None:
        return self.defaults.context.name if self.defaults and self.defaults.context else None

    def set_default(self, name: str) -> None:
        if self.defaults is None:
            self.defaults = Defaults()
        if self.defaults.context is None:
            self.defaults.context = DefaultContext()
        self.defaults.context.name = name


def config_path(explicit: str | None, environ: dict[str, str] | os._Environ[str]) -> Path:
    """`--config`, else $PORTWAY_CONFIG, else $RSTREAM_CONFIG, else ~/.portway/config.yaml."""
    chosen = explicit or environ.get("PORTWAY_CONFIG") or environ.get("RSTREAM_CONFIG")
    return Path(chosen).expanduser() if chosen else DEFAULT_PATH.expanduser()


def load(path: Path) -> Config:
    """Read the file (a missing one is an empty configuration). Errors name the file and the key."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Config()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        return Config()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with version, defaults and contexts")
    try:
        config = Config.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{path}: {key}: {first['msg']}") from None
    names = [c.name for c in config.contexts]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"{path}: contexts: the name {duplicate!r} is used twice")
    return config


def dump(config: Config) -> dict[str, Any]:
    return config.model_dump(by_alias=True, exclude_none=True, exclude_defaults=False)


def save(path: Path, config: Config) -> None:
    """Write atomically with mode 0600 (the directory 0700): a failed write leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, yaml.safe_dump(dump(config), sort_keys=False).encode(), 0o600)


@dataclass(frozen=True, slots=True)
class Connection:
    """Where and how an agent command connects, after flags, environment and context are combined."""

    engine: str
    token: str | None
    ca_file: str | None
    server_name: str | None
    insecure: bool
    context: str | None


def resolve(config: Config, context_name: str | None, *, engine: str | None, token: str | None,
            ca_file: str | None, insecure: bool, environ: dict[str, str] | os._Environ[str]) -> Connection:
    """Flags > environment (RSTREAM_ENGINE, RSTREAM_AUTHENTICATION_TOKEN, PORTWAY_ENGINE_TLS_CA_FILE) >
    the context (`--context`, $RSTREAM_CONTEXT, or the default one) > built-in defaults."""
    name = context_name or environ.get("RSTREAM_CONTEXT") or config.default_name
    context = config.find(name) if name else None
    if name and context is None and (context_name or environ.get("RSTREAM_CONTEXT")):
        raise ConfigError(f"no context named {name!r} (see: portway context list)")
    tls = context.transport.tls if context and context.transport and context.transport.tls else EngineTls()
    return Connection(
        engine=engine or environ.get("RSTREAM_ENGINE") or (context.engine if context else None) or "localhost:8443",
        token=token or environ.get("RSTREAM_AUTHENTICATION_TOKEN") or (context.token() if context else None),
        ca_file=ca_file or environ.get("PORTWAY_ENGINE_TLS_CA_FILE") or tls.ca_file,
        server_name=tls.server_name,
        insecure=insecure or tls.insecure_skip_verify,
        context=context.name if context else None,
    )
