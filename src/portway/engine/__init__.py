"""The Portway engine: the edge that agents connect out to and visitors reach tunnels through.

`Engine`, `EngineConfig` and `load_config` are loaded on first use (PEP 562): importing a submodule such as
`portway.engine.configfile` — every `portway` command does — must not import the whole server (~0.3 s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portway.engine.config import EngineConfig
    from portway.engine.configfile import load_config
    from portway.engine.server import Engine

__all__ = ["Engine", "EngineConfig", "load_config"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from portway.engine.server import Engine  # noqa: PLC0415

        return Engine
    if name == "EngineConfig":
        from portway.engine.config import EngineConfig  # noqa: PLC0415

        return EngineConfig
    if name == "load_config":
        from portway.engine.configfile import load_config  # noqa: PLC0415

        return load_config
    raise AttributeError(f"module 'portway.engine' has no attribute {name!r}")
