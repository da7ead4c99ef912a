"""engine/webhooks/secret.py and url.py: the secret format (§4.3), its masking, and accepted URLs."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rstream import webhooks as official

from portway.engine.webhooks.secret import check_secret, mask, new_secret
from portway.engine.webhooks.url import check_url


def test_a_new_secret_is_whsec_and_32_bytes_of_unpadded_base64url() -> None:
    secret = new_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", secret)
    assert len(base64.urlsafe_b64decode(secret[6:] + "=")) == 32
    assert check_secret(secret) == secret
    assert len({new_secret() for _ in range(100)}) == 100


def test_the_official_sdks_secrets_are_accepted() -> None:
    for _ in range(20):
        assert check_secret(official.generate_signing_secret())


@given(raw=st.binary(min_size=32, max_size=32))
def test_any_32_bytes_make_a_valid_secret(raw: bytes) -> None:
    assert check_secret("whsec_" + base64.urlsafe_b64encode(raw).decode().rstrip("="))


@pytest.mark.parametrize("value", ["", "whsec_", "whsec_short", "sk_" + "a" * 43, "whsec_" + "a" * 42,
                                   "whsec_" + "a" * 44, "whsec_" + "a" * 42 + "=", "whsec_" + "+" * 43])
def test_other_strings_are_refused_without_being_echoed(value: str) -> None:
    with pytest.raises(ValueError, match="whsec_") as refused:
        check_secret(value)
    assert not value[6:] or value[6:] not in str(refused.value)


def test_the_mask_shows_only_a_prefix() -> None:
    secret = new_secret()
    assert mask(secret) == secret[:10] + "…"
    assert secret[10:] not in mask(secret)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "https://example.com/a?b=c", "http://[::1]:1/x"])
def test_http_urls_are_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://example.com/", "http"), ("example.com/hook", "http"), ("http:///path", "no host"),
    ("https://user:pw@example.com/", "credentials"), ("https://example.com/#x", "fragment"),
    ("http://example.com:99999/", "malformed"), ("http://exa mple.com/", "spaces"),
    ("https://example.com/" + "a" * 3000, "longer"), ("http://example.com:0/", "port"),
])
def test_other_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_url(url)
