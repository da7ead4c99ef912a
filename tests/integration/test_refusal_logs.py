"""Refused tokens are logged with their reason on every surface that takes one (real engine, real TLS,
httpx over HTTP/1.1 and h2): the Engine API and token_auth tunnels, like the control channel and private
dials. One line per refused request, naming the request and the source, never quoting the token."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest

from portway.engine.auth import mint_token
from tests.conftest import UNIT_S, EchoServer, EngineHandle, forwarded_tunnel, running_engine

WAIT_S = 10 * UNIT_S
PROTOCOLS = pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2"])


def expired(engine: EngineHandle) -> str:
    return mint_token(engine.secret, subject="late", ttl_s=60, now=time.time() - 600)


def forged(engine: EngineHandle) -> str:
    """A well-formed token signed with another secret."""
    return mint_token("f" * 40, subject="mallory", ttl_s=600)


def engine_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The engine's records (httpx logs the URLs it requests, query tokens included: that is the client)."""
    return [record for record in caplog.records if record.name.startswith("portway")]


def lines_with(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [record for record in engine_lines(caplog) if text in record.getMessage()]


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in engine_lines(caplog))


@PROTOCOLS
@pytest.mark.parametrize(("make", "reason"), [(expired, "token expired"), (forged, "token signature invalid")],
                         ids=["expired", "bad-signature"])
async def test_engine_api_logs_why_a_token_was_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture, http2: bool,
                                                       make: object, reason: str) -> None:
    async with running_engine(tmp_path) as engine:
        assert callable(make)
        token = make(engine)
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{engine.port}", verify=engine.visitor_tls(),
                                     http2=http2, timeout=WAIT_S) as client:
            with caplog.at_level(logging.INFO, "portway"):
                got = await client.get("/api/tunnels", headers={"Authorization": f"Bearer {token}"})
                assert got.status_code == 401 and reason in got.json()["error"]
                assert got.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
                again = await client.get("/api/auth", headers={"Authorization": f"Bearer {token}"})
                assert again.status_code == 401
                missing = await client.get("/api/clients")
                assert missing.status_code == 401
    (first, second) = lines_with(caplog, reason)  # exactly one line per refused request
    assert first.levelno == logging.WARNING and first.name == "portway.engine.api"
    assert first.getMessage() == f"engine API GET /api/tunnels from 127.0.0.1 refused: {reason}"
    assert second.getMessage().startswith("engine API GET /api/auth from 127.0.0.1 refused:")
    (none,) = lines_with(caplog, "token missing")
    assert none.levelno == logging.INFO and "GET /api/clients from 127.0.0.1" in none.getMessage()
    assert token not in logged(caplog)
    assert token.split(".")[2] not in logged(caplog)  # not even its signature


async def test_a_signaling_token_in_the_query_never_reaches_the_access_log(
        engine: EngineHandle, caplog: pytest.LogCaptureFixture) -> None:
    """Signaling streams take their token as `rstream.token` in the query: the access line of a refused (or
    any answered) request shows the parameter with its value replaced."""
    token = forged(engine)
    async with httpx.AsyncClient(verify=engine.visitor_tls(), timeout=WAIT_S) as client:
        with caplog.at_level(logging.INFO, "portway"):
            for path in ("/api/sse", "/api/tunnels"):
                got = await client.get(f"https://127.0.0.1:{engine.port}{path}",
                                       params={"a": "1", "rstream.token": token})
                assert got.status_code == 401, got.text
    access = [r.getMessage() for r in engine_lines(caplog) if r.name == "portway.access"]
    assert len(access) == 2 and all("rstream.token=[redacted]" in line for line in access), access
    async with httpx.AsyncClient(verify=engine.visitor_tls(), http2=True, timeout=WAIT_S) as client:
        with caplog.at_level(logging.INFO, "portway"):
            got = await client.get(f"https://127.0.0.1:{engine.port}/api/tunnels", params={"rstream.token": token},
                                   headers={"Authorization": f"Bearer {engine.token()}"})
            assert got.status_code == 200 and got.http_version == "HTTP/2"
    (h2_line,) = [r.getMessage() for r in engine_lines(caplog) if r.name == "portway.access" and "proto=h2" in
                  r.getMessage()]  # the engine's own API over h2 has its access line too
    assert "GET /api/tunnels?rstream.token=[redacted] status=200" in h2_line, h2_line
    assert token[:40] not in logged(caplog) and token.split(".")[2][:20] not in logged(caplog)


async def test_engine_api_logs_a_malformed_authorization_header(engine: EngineHandle,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    token = forged(engine)
    async with httpx.AsyncClient(verify=engine.visitor_tls(), timeout=WAIT_S) as client:
        with caplog.at_level(logging.INFO, "portway"):
            got = await client.get(f"https://127.0.0.1:{engine.port}/api/tunnels",
                                   headers={"Authorization": f"Token {token}"})
    assert got.status_code == 401
    (line,) = lines_with(caplog, "refused: the Authorization header is not 'Bearer <token>'")
    assert line.levelno == logging.WARNING
    assert token not in logged(caplog)


@PROTOCOLS
async def test_token_auth_logs_why_a_request_was_refused(engine: EngineHandle, caplog: pytest.LogCaptureFixture,
                                                         http2: bool) -> None:
    bad, late = forged(engine), expired(engine)
    async with EchoServer(http=True) as upstream, \
            forwarded_tunnel(engine, upstream.port, protocol="http", token_auth=True) as tunnel, \
            httpx.AsyncClient(http2=http2, verify=engine.visitor_tls(), timeout=WAIT_S) as client:
        hostname = tunnel.properties.hostname
        assert hostname is not None

        async def visit(path: str, token: str | None = None) -> int:
            headers = {"host": hostname, **({"authorization": f"Bearer {token}"} if token else {})}
            got = await client.get(f"https://127.0.0.1:{engine.port}{path}", headers=headers,
                                   extensions={"sni_hostname": hostname})
            assert got.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            return got.status_code

        with caplog.at_level(logging.INFO, "portway"):
            assert await visit("/a", bad) == 401
            assert await visit("/b") == 401
            assert await visit(f"/c?rstream.token={late}") == 401
            assert await visit("/d", bad) == 401  # the same refused token again: its reason again
            assert await visit("/e", engine.token()) == 200
            good = engine.token()
            assert await visit(f"/f?x=1&rstream.token={good}") == 200  # accepted from the query
            unknown = await client.get(f"https://127.0.0.1:{engine.port}/g?rstream.token={good}",
                                       headers={"host": "nope.t.localhost"},
                                       extensions={"sni_hostname": "nope.t.localhost"})
            assert unknown.status_code in (404, 421)  # refused before token_auth could take the token out
    prefix = f"tunnel {tunnel.id}: visitor 127.0.0.1 refused by token_auth: "
    signature = lines_with(caplog, "token signature invalid")
    assert [r.getMessage() for r in signature] == [prefix + "token refused: token signature invalid"] * 2
    assert all(r.levelno == logging.WARNING and r.name == "portway.engine.edge" for r in signature)
    (no_token,) = lines_with(caplog, "refused by token_auth: no token")
    assert no_token.levelno == logging.INFO
    (late_line,) = lines_with(caplog, "token expired")
    assert late_line.getMessage() == prefix + "token refused: token expired"
    assert len(lines_with(caplog, "refused by token_auth")) == 4  # one line per refused request, no more
    for token in (bad, late, good):  # nowhere in the engine's log, access lines included (not even cut short)
        assert token[:40] not in logged(caplog) and token.split(".")[2][:20] not in logged(caplog)
    access = [r.getMessage() for r in engine_lines(caplog) if r.name == "portway.access"]
    assert any("/f?x=1" in line for line in access), access
    assert all(line.count("rstream.token=") == line.count("rstream.token=[redacted]") for line in access), access
