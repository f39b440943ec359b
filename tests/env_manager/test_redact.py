"""The one redaction mechanism: known values and recognisable shapes."""

from __future__ import annotations

import logging

import pytest
from geolibre_env.redact import (
    RedactingFilter,
    redact,
    redact_mapping,
    redact_url,
    register_secret,
)

HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


@pytest.mark.parametrize(
    "text",
    [
        f"token is {HF}",
        "Authorization: Bearer s3cr3t-value-123456",
        "{'authorization': 'Bearer s3cr3t-value-123456'}",
        "X-GeoLibre-Token: s3cr3t-value-123456",
        "https://alice:s3cr3t-value-123456@proxy.corp:8080/simple",
        "HF_TOKEN=s3cr3t-value-123456 uv pip install",
        "--token s3cr3t-value-123456",
        "Proxy-Authorization: Basic czNjcjN0LXZhbHVlLTEyMzQ1Ng==",
    ],
)
def test_shapes_of_secrets_are_masked(text):
    cleaned = redact(text)
    assert "s3cr3t-value-123456" not in cleaned
    assert HF not in cleaned
    assert "czNjcjN0LXZhbHVlLTEyMzQ1Ng==" not in cleaned
    assert "***" in cleaned


def test_registered_values_are_masked_anywhere():
    register_secret("plain-looking-value-42")
    assert redact("prefixplain-looking-value-42suffix") == "prefix***suffix"


def test_urls_keep_their_host():
    assert redact_url("http://bob:pw@mirror.example:3128/simple") == (
        "http://mirror.example:3128/simple"
    )
    assert redact_url("https://pypi.org/simple") == "https://pypi.org/simple"


def test_mappings_mask_secret_named_keys_but_keep_yes_no_answers():
    data = redact_mapping(
        {"HF_TOKEN": "abc123456789", "token_configured": "yes", "nested": {"password": "x1"},
         "url": "http://u:p@h/"},
    )  # fmt: skip
    assert data["HF_TOKEN"] == "***"
    assert data["token_configured"] == "yes"
    assert data["nested"]["password"] == "***"
    assert data["url"] == "http://h/"


def test_logging_filter_redacts_messages_args_and_tracebacks():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    logger = logging.getLogger("geolibre.test.redact")
    handler = Keep()
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("using %s", HF)
        try:
            raise RuntimeError(f"bad token {HF}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert records and all(HF not in line for line in records)
    assert "RuntimeError" in records[-1]
