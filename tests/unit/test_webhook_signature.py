"""engine/webhooks/signature.py: the rstream-signature header, checked against the official SDK both ways."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from rstream import webhooks as official

from portway.engine.webhooks import signature
from portway.engine.webhooks.secret import new_secret

bodies = st.binary(max_size=512)
stamps = st.integers(min_value=0, max_value=2**40)
secrets = st.binary(min_size=32, max_size=32).map(
    lambda raw: "whsec_" + base64.urlsafe_b64encode(raw).decode().rstrip("="))
ENVELOPE = b'{"id":"evt_1","type":"tunnel.created","object":{"id":"t1"}}'


@given(body=bodies, keys=st.lists(secrets, min_size=1, max_size=3), timestamp=stamps)
def test_the_header_has_one_v1_per_secret(body: bytes, keys: list[str], timestamp: int) -> None:
    header = signature.sign(body, keys, timestamp)
    assert re.fullmatch(r"t=\d+(,v1=[0-9a-f]{64})+", header)
    parsed_t, values = signature.parse(header)
    assert parsed_t == timestamp and len(values) == len(keys)
    for key in keys:
        assert signature.verify(body, header, key, now=timestamp)


@given(body=bodies, key=secrets, other=secrets, timestamp=stamps)
def test_another_secret_or_body_does_not_verify(body: bytes, key: str, other: str, timestamp: int) -> None:
    assume(key != other)
    header = signature.sign(body, [key], timestamp)
    assert not signature.verify(body, header, other, now=timestamp)
    assert not signature.verify(body + b"x", header, key, now=timestamp)


@given(body=bodies, key=secrets, timestamp=stamps, skew=st.integers(min_value=-1000, max_value=1000))
def test_the_timestamp_must_be_within_tolerance(body: bytes, key: str, timestamp: int, skew: int) -> None:
    header = signature.sign(body, [key], timestamp)
    assert signature.verify(body, header, key, now=timestamp + skew) is (abs(skew) <= signature.TOLERANCE_S)


@given(keys=st.lists(secrets, min_size=1, max_size=3), timestamp=st.integers(min_value=0, max_value=2**33))
def test_the_official_sdk_verifies_what_we_sign(keys: list[str], timestamp: int) -> None:
    header = signature.sign(ENVELOPE, keys, timestamp)
    for key in keys:
        event = official.verify_event(ENVELOPE, header, key, received_at=timestamp)
        assert event.id == "evt_1"


@given(key=secrets, timestamp=st.integers(min_value=0, max_value=2**33))
def test_we_verify_what_the_official_sdk_signs(key: str, timestamp: int) -> None:
    header = official.sign_payload(ENVELOPE, key, timestamp)
    assert header == signature.sign(ENVELOPE, [key], timestamp)
    assert signature.verify(ENVELOPE, header, key, now=timestamp)


@given(header=st.text(max_size=80))
def test_parsing_never_crashes(header: str) -> None:
    try:
        timestamp, values = signature.parse(header)
    except ValueError:
        return
    assert timestamp >= 0 and values


@pytest.mark.parametrize("header", ["", "t=1", "v1=ab", "t=x,v1=ab", "t=-1,v1=ab"])
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(ValueError, match="t=<unix seconds>"):
        signature.parse(header)
    assert not signature.verify(b"", header, new_secret(), now=1)


def test_signing_needs_a_secret_and_a_sane_time() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signature.sign(b"", [], 1)
    with pytest.raises(ValueError, match="negative"):
        signature.sign(b"", [new_secret()], -1)


def test_unknown_schemes_are_skipped() -> None:
    key = new_secret()
    header = signature.sign(b"{}", [key], 10).replace("t=10,", "t=10,v2=zz,")
    assert signature.verify(b"{}", header, key, now=10)
