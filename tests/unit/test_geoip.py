"""The engine's GeoIP database: lookups from a real .mmdb file, reloaded when the file changes."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from portway.engine.geoip import GeoIPDatabase
from portway.errors import ConfigError


def write(path: Path, countries: dict[str, dict[str, object]], *, mtime_ns: int | None = None) -> None:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City")
    for cidr, record in countries.items():
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


ip = ipaddress.ip_address


def test_country_then_registered_country_then_unknown(tmp_path: Path) -> None:
    path = tmp_path / "geo.mmdb"
    write(path, {
        "192.0.2.0/24": {"country": {"iso_code": "FR"}, "city": {"names": {"en": "Paris"}}},
        "198.51.100.0/24": {"registered_country": {"iso_code": "NL"}},
        "2001:db8::/32": {"country": {"iso_code": "JP"}},
        "203.0.113.0/24": {"continent": {"code": "EU"}},
    })
    db = GeoIPDatabase(path)
    try:
        assert db.country(ip("192.0.2.7")) == "FR"
        assert db.country(ip("198.51.100.1")) == "NL"
        assert db.country(ip("2001:db8::1")) == "JP"
        assert db.country(ip("203.0.113.1")) is None
        assert db.country(ip("10.0.0.1")) is None
    finally:
        db.close()


def test_a_changed_file_is_reloaded_and_a_broken_one_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "geo.mmdb"
    write(path, {"192.0.2.0/24": {"country": {"iso_code": "FR"}}}, mtime_ns=1_000_000_000)
    db = GeoIPDatabase(path, check_every_s=0)
    try:
        assert db.country(ip("192.0.2.1")) == "FR"
        write(path, {"192.0.2.0/24": {"country": {"iso_code": "DE"}}}, mtime_ns=2_000_000_000)
        assert db.country(ip("192.0.2.1")) == "DE"
        path.write_bytes(b"half-written")
        os.utime(path, ns=(3_000_000_000, 3_000_000_000))
        assert db.country(ip("192.0.2.1")) == "DE"  # the loaded database keeps serving
        assert db.country(ip("192.0.2.1")) == "DE"
        assert sum("cannot be opened" in r.getMessage() for r in caplog.records) == 1  # logged once
        path.unlink()
        assert db.country(ip("192.0.2.1")) == "DE"
    finally:
        db.close()


def test_a_missing_or_invalid_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be opened"):
        GeoIPDatabase(tmp_path / "missing.mmdb")
    (tmp_path / "bad.mmdb").write_bytes(b"\0" * 64)
    with pytest.raises(ConfigError, match="cannot be opened"):
        GeoIPDatabase(tmp_path / "bad.mmdb")
