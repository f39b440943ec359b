"""Install failures read as one sentence and a next step, from what uv and pip really
printed (recorded against the loopback servers in package_index.py and http_proxy.py,
a tmpfs filled up, a folder the user may not write, a path too long)."""

from __future__ import annotations

from pathlib import Path

import pytest
from geolibre_env.install.failures import KINDS, FailureContext, classify_install_failure

RECORDED = Path(__file__).parents[1] / "fixtures" / "install_failures"
PROXY = FailureContext(
    where="the mirror 127.0.0.1:39861 (UV_INDEX_URL)",
    host="127.0.0.1:39861",
    proxy="127.0.0.1:39587",
)


def recorded(name: str) -> str:
    return (RECORDED / f"{name}.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "context", "kind", "summary", "hint_mentions"),
    [
        ("uv-cert", None, "certificate",
         "The secure connection to 127.0.0.1:39861 failed its certificate check: the "
         "certificate is not signed by an authority this computer trusts.",
         "GEOLIBRE_ML_CA_BUNDLE"),
        ("uv-cert-verbose", None, "certificate",
         "The secure connection to 127.0.0.1:39861 failed its certificate check: the "
         "certificate is not signed by an authority this computer trusts.",
         "system trust store"),
        ("pip-cert", None, "certificate",
         "The secure connection to 127.0.0.1:39861 failed its certificate check: the "
         "certificate is not signed by an authority this computer trusts.",
         "GEOLIBRE_ML_CA_BUNDLE"),
        ("uv-407-https", PROXY, "proxy-auth",
         "The proxy 127.0.0.1:39587 asks for a user name and password (HTTP 407).",
         "HTTPS_PROXY (http://user:password@host:port)"),
        ("uv-407-http", PROXY, "proxy-auth",
         "The proxy 127.0.0.1:39587 asks for a user name and password (HTTP 407).",
         "HTTPS_PROXY"),
        ("pip-407", PROXY, "proxy-auth",
         "The proxy 127.0.0.1:39587 asks for a user name and password (HTTP 407).",
         "ask IT"),
        ("uv-proxy-refused", FailureContext(proxy="127.0.0.1:9", host="pypi.org"), "proxy",
         "The install could not get through the proxy 127.0.0.1:9: it refused the connection.",
         "HTTPS_PROXY"),
        ("uv-dns", None, "dns",
         "The name pypi.mirror.invalid could not be found: this computer looks offline, or "
         "the name is wrong.", "geolibre-ml install --from BUNDLE"),
        ("pip-dns", None, "dns",
         "The name pypi.mirror.invalid could not be found: this computer looks offline, or "
         "the name is wrong.", "UV_INDEX_URL"),
        ("uv-refused", None, "network",
         "Could not reach 127.0.0.1:9 (the connection was refused).", "HTTPS_PROXY"),
        ("uv-offline", None, "offline",
         "uv is in offline mode (UV_OFFLINE) and the package torch is not in its cache or in "
         "the package index.", "Unset UV_OFFLINE"),
        ("uv-missing", FailureContext(where="the mirror 127.0.0.1:44319 (UV_INDEX_URL)"),
         "missing-package",
         "The package torchvision is not available from the mirror 127.0.0.1:44319 "
         "(UV_INDEX_URL).", "add it"),
        ("pip-missing", FailureContext(where="the mirror 127.0.0.1:44319 (UV_INDEX_URL)"),
         "missing-package",
         "The package torchvision==0.29.1 is not available from the mirror 127.0.0.1:44319 "
         "(UV_INDEX_URL).", "GEOLIBRE_ML_TORCH_INDEX_URL"),
        ("uv-missing-wheelhouse-offline", FailureContext(where="the wheelhouse", local=True),
         "missing-package", "The package torchvision is not available from the wheelhouse.",
         "to the wheelhouse (UV_FIND_LINKS)"),
        ("uv-missing-find-links", FailureContext(where="the offline bundle b.tar", local=True),
         "missing-package",
         "The package torchvision is not available from the offline bundle b.tar.", "mirror"),
        ("uv-hash", None, "checksum",
         "A downloaded file (torch==2.14.1+standin) did not match its published checksum, so "
         "it was not used.", "altering files"),
        ("uv-disk-full", None, "disk-full", "The disk filled up during the install.",
         "resumes"),
        ("uv-permission", None, "permission",
         "The install was not allowed to write a file (/tmp/exp/c7/sdists-v11/.git).",
         "antivirus"),
        ("uv-path", None, "path",
         "A file path in the install was too long or had characters this system could not "
         "store.", "GEOLIBRE_ML_HOME"),
    ],
)  # fmt: skip
def test_each_recorded_failure_is_one_sentence_and_a_next_step(
    name, context, kind, summary, hint_mentions
):
    failure = classify_install_failure(recorded(name), context)
    assert failure.kind == kind
    assert failure.summary == summary
    assert hint_mentions in failure.hint


def test_a_proxy_that_refuses_given_credentials_says_so_without_them():
    context = FailureContext(proxy="127.0.0.1:39587", proxy_has_credentials=True)
    failure = classify_install_failure(recorded("uv-407-https"), context)
    assert failure.summary == (
        "The proxy 127.0.0.1:39587 refused the user name and password in HTTPS_PROXY (HTTP 407)."
    )
    assert "expired" in failure.hint


@pytest.mark.parametrize(
    ("name", "host"), [("uv-dns", "pypi.mirror.invalid"), ("uv-refused", None)]
)
def test_a_failed_host_is_named_with_the_hosts_that_did_answer(name, host):
    # What the plan's source check saw answer: the computer is online.
    context = FailureContext(answered=("pypi.org", "huggingface.co"))
    failure = classify_install_failure(recorded(name), context)
    assert "while pypi.org, huggingface.co answered" in failure.summary
    assert "looks offline" not in failure.summary
    if host is not None:
        assert failure.summary.startswith(f"The name {host} could not be found")
    # Without that knowledge the sentence stays as it was.
    assert "answered" not in classify_install_failure(recorded(name)).summary


def test_every_kind_is_known_and_unrecognised_output_still_reads_as_a_sentence():
    failure = classify_install_failure("error: something new went wrong\n")
    assert failure.kind == "unknown" and failure.kind in KINDS
    assert failure.summary == "The package install failed: error: something new went wrong."
    assert "doctor --bundle" in failure.hint
