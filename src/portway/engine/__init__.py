"""The Portway engine: the edge that agents connect out to and visitors reach tunnels through."""

from portway.engine.config import EngineConfig
from portway.engine.configfile import load_config
from portway.engine.server import Engine

__all__ = ["Engine", "EngineConfig", "load_config"]
