"""The engine's GeoIP database: a MaxMind-format (.mmdb) file, reopened when it changes on disk.

Operators refresh GeoLite/GeoIP2 files in place (e.g. geoipupdate); checking the file's mtime at most
every few seconds picks a new one up without a restart and costs one `stat` per interval, not per
visitor. A file that fails to open keeps the previous database serving and is logged once. The file is
read into memory rather than mapped, so an update written in place (not renamed over) cannot change
the bytes under a live reader; lookups happen once per visitor connection, so the slower reader is fine.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import maxminddb

from portway.engine.policy import IPAddress
from portway.errors import ConfigError

log = logging.getLogger("portway.engine.geoip")

CHECK_EVERY_S = 5.0


class GeoIPDatabase:
    """Country lookups from a MaxMind database (GeoIP2/GeoLite2 Country or City layout)."""

    def __init__(self, path: Path, *, check_every_s: float = CHECK_EVERY_S) -> None:
        self.path = path
        self._check_every_s = check_every_s
        try:
            self._mtime = os.stat(path).st_mtime_ns
            self._reader: Any = maxminddb.open_database(str(path), maxminddb.MODE_MEMORY)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
            raise ConfigError(f"geoip.database_file {str(path)!r} cannot be opened: {error}") from None
        self._next_check = time.monotonic() + check_every_s
        self._failed_mtime: int | None = None

    def country(self, address: IPAddress) -> str | None:
        """ISO 3166-1 alpha-2 code of `address` (its country, else its registered country), or None."""
        self._maybe_reload()
        try:
            record = self._reader.get(address)
        except (ValueError, maxminddb.InvalidDatabaseError):
            return None
        if not isinstance(record, dict):
            return None
        for key in ("country", "registered_country"):
            entry = record.get(key)
            if isinstance(entry, dict) and isinstance(entry.get("iso_code"), str):
                return str(entry["iso_code"])
        return None

    def close(self) -> None:
        self._reader.close()

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self._check_every_s
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError as error:
            if self._failed_mtime != -1:
                log.warning("geoip database %s is unreadable (%s); still using the loaded one", self.path, error)
                self._failed_mtime = -1
            return
        if mtime in (self._mtime, self._failed_mtime):
            return
        try:
            reader = maxminddb.open_database(str(self.path), maxminddb.MODE_MEMORY)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
            log.warning("geoip database %s changed but cannot be opened (%s); still using the loaded one",
                        self.path, error)
            self._failed_mtime = mtime
            return
        old, self._reader, self._mtime, self._failed_mtime = self._reader, reader, mtime, None
        old.close()
        log.info("geoip database %s reloaded", self.path)
