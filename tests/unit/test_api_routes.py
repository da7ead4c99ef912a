"""api/routes.answer is total: any method, target and Authorization value gets a JSON answer with a
sensible status, never an exception, and never echoes the credential."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from portway.engine.api.routes import answer
from portway.engine.api.views import ClientView, TunnelView
from portway.engine.auth import Principal, TokenVerifier, mint_token

SECRET = "s" * 32


class Fixed:
    """An inventory with one tunnel and one client, checking tokens with a real verifier."""

    host = "localhost"
    version = "0"

    def __init__(self) -> None:
        self._verifier = TokenVerifier(SECRET, enabled=True)

    def verify(self, token: str | None) -> Principal:
        return self._verifier.verify(token)

    def tunnels(self) -> list[TunnelView]:
        return [TunnelView(id="t1", client_id="c1", name="web", labels={"a": "b"}, protocol="http")]

    def tunnel_count(self) -> int:
        return 1

    def clients(self) -> list[ClientView]:
        return [ClientView(id="c1")]


INVENTORY = Fixed()
TOKEN = mint_token(SECRET, subject="me", ttl_s=24 * 3600)  # module-level: valid however long the suite runs


@settings(max_examples=300)
@given(method=st.sampled_from(["GET", "POST", "HEAD", "DELETE"]) | st.text(max_size=8),
       target=st.text(max_size=200) | st.builds(lambda p, q: f"/api/{p}?params={q}",
                                                 st.sampled_from(["tunnels", "clients", "tunnels/t1", "auth"]),
                                                 st.text(max_size=80)),
       authorization=st.none() | st.binary(max_size=80) | st.just(b"Bearer " + TOKEN.encode()))
def test_answer_is_total(method: str, target: str, authorization: bytes | None) -> None:
    got = answer(INVENTORY, method, target, authorization)
    assert got.status in (200, 400, 401, 403, 404, 405)
    body = json.loads(got.body)
    if got.status != 200:
        assert body["status"] == got.status and body["error"]
        assert TOKEN not in body["error"]


def test_cleartext_serves_only_health() -> None:
    auth = b"Bearer " + TOKEN.encode()
    assert answer(INVENTORY, "GET", "/healthz", None, secure=False).status == 200
    assert answer(INVENTORY, "GET", "/api/tunnels", auth, secure=False).status == 403
    assert json.loads(answer(INVENTORY, "GET", "/api/tunnels", auth).body)[0]["id"] == "t1"


def test_too_many_query_fields_is_a_400() -> None:
    auth = b"Bearer " + TOKEN.encode()
    assert answer(INVENTORY, "GET", "/api/tunnels?" + "&".join(["a=1"] * 40), auth).status == 400
