"""The engine's own certificate: where it is, how it is loaded, and noticing when it is replaced.

With `certs.static` the operator renews the certificate on disk (certbot, a secret mount…) while the
engine runs. `CertWatcher` stats the two files on a timer; when they change, the engine rebuilds every
server context from them and swaps the new ones in, so new connections get the new certificate while
established ones keep theirs. A file that does not load is logged once and the previous contexts stay.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("portway.engine.certs")

# How often the static certificate files are stat'ed (two stat calls: cheap).
CHECK_INTERVAL_S = 1.0

_Stamp = tuple[tuple[int, int, int] | None, ...]


@dataclass(frozen=True, slots=True)
class CertFiles:
    cert: Path
    key: Path
    ca: Path | None


def _no_password() -> bytes:
    """An encrypted key must fail to load, never make OpenSSL prompt on the engine's terminal."""
    return b""


def load_chain(context: ssl.SSLContext, files: CertFiles) -> None:
    """Load the engine certificate chain and key into `context` (ssl.SSLError / OSError if unusable)."""
    context.load_cert_chain(files.cert, files.key, password=_no_password)


def _stamp_of(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class CertWatcher:
    """Calls `reload()` once the certificate or key file changed (mtime, size or inode: a rename-into-place
    keeps the mtime of the new file, which may be older than the old one).

    `reload` builds every context from the files and swaps them in only if all of them loaded; it raises
    ssl.SSLError or OSError otherwise. A failed version of the files is logged once and not retried until
    the files change again; the certificate in service stays.
    """

    def __init__(self, files: CertFiles, reload: Callable[[], None], *, interval_s: float = CHECK_INTERVAL_S) -> None:
        self.files = files
        self.interval_s = interval_s  # how often the owner calls check()
        self._reload = reload
        self._loaded = self._stamp()
        self._failed: _Stamp | None = None

    def _stamp(self) -> _Stamp:
        return _stamp_of(self.files.cert), _stamp_of(self.files.key)

    def check(self) -> bool:
        """Reload if the files changed since the last successful (or failed) load; True if reloaded."""
        stamp = self._stamp()
        if stamp in (self._loaded, self._failed):
            return False
        try:
            self._reload()
        except (ssl.SSLError, OSError) as error:
            self._failed = stamp
            log.warning("certs.static: %s / %s changed but cannot be loaded (%s); still serving the previous "
                        "certificate", self.files.cert, self.files.key, error)
            return False
        self._loaded, self._failed = stamp, None
        log.info("certs.static: reloaded the certificate from %s", self.files.cert)
        return True
