"""The Hub's refusals and a broken network, as one sentence and a next step.

The download runs in the model environment (:mod:`geolibre_env.weights.hub_runner`),
so its failures arrive as data: the HTTP status and the Hub's ``X-Error-Code``,
the cause chain's class names and text. Class names, not classes: huggingface_hub
1.x raises httpx's errors, 2.x httpx2's.
"""

from __future__ import annotations

from typing import Any

from geolibre_env.errors import InstallCancelledError, WeightsError
from geolibre_env.net.http_client import host_of, proxy_auth_reason
from geolibre_env.proxies import ProxyConfig, has_credentials, proxy_netloc
from geolibre_env.redact import redact

PUBLIC_HUB = "https://huggingface.co"
TOKENS_PAGE = f"{PUBLIC_HUB}/settings/tokens"
RESUME_HINT = "Run it again: it continues from the bytes already received."
OFFLINE_HINT = (
    "Connect to the internet, set HF_ENDPOINT to a mirror, "
    "or use a local checkpoint (--checkpoint / SAM3_CHECKPOINT_PATH)."
)
PROXY_HINT = (
    "Check the proxy setting ({setting}); a proxy that asks for a password takes it in the "
    "URL (http://user:password@host:port)."
)
TLS_HINT = (
    "If a corporate proxy inspects TLS, set GEOLIBRE_ML_CA_BUNDLE to its root certificate "
    "(verification stays on); if only the Xet transfers fail, also set HF_HUB_DISABLE_XET=1; "
    "or use a local checkpoint (--checkpoint / SAM3_CHECKPOINT_PATH)."
)
# A refusal of the token or the licence: (status, a token was given) -> why, next step.
GATED = {
    (401, False): ("HTTP 401: no token was given", "{repo} is gated: accept its licence on the "
                   "Hub ({page}), create a read token ({tokens}), then retry with the token "
                   "(--token or HF_TOKEN)."),
    (401, True): ("HTTP 401: the token was rejected", "Check the token is current ({tokens}), "
                  "accept the licence for {repo} on the Hub ({page}), then retry."),
    (403, True): ("HTTP 403", "Accept the licence for {repo} on the Hub ({page}), make sure "
                  "your token can read gated repositories, then retry."),
}  # fmt: skip
# The runner's other failures, by case: the sentence and the next step, filled in
# from its data.
SENTENCES = {
    "integrity": ("{what} from {repo} did not match the Hub's checksum (sha256 {actual:.12}… "
                  "instead of {expected:.12}…), so it was discarded.",
                  "Run the download again; if it fails the same way, a proxy or the mirror "
                  "in HF_ENDPOINT is altering the file."),
    "disk": ("Not enough free disk for the SAM 3 weights: {needed:.1f} GB needed in {folder}, "
             "{free:.1f} GB free.",
             "Free some space (or move GEOLIBRE_ML_HOME to a larger drive), then retry."),
    "write": ("Could not write {what}: {strerror}.",
              "Check free disk space and that the folder is writable, then retry."),
    "missing": ("The Hub at {host} has no {missing}.",
                "{check} HF_ENDPOINT and the [weights] section of the model-env spec."),
    "429": ("The Hugging Face Hub is limiting how fast we may download (HTTP 429).",
            "Wait a few minutes and retry; a Hub token raises the limit."),
    "http": ("The Hugging Face Hub answered HTTP {status} for {repo} ({what}).",
             "The Hub may be having trouble: retry in a few minutes."),
}  # fmt: skip
DEFAULT_WHAT = {"write": "the weights", "http": "a request"}  # when no file is named
# A broken connection, first match wins: kind, exception class names, words in the
# text, the reason shown, the next step.
TRANSPORT = (
    ("dns", (), ("name or service not known", "gaierror", "getaddrinfo"),
     "the name could not be resolved (no DNS answer)", OFFLINE_HINT),
    ("refused", (), ("refused",), "the connection was refused", OFFLINE_HINT),
    ("timeout", ("ConnectTimeout", "ReadTimeout", "TimeoutException"), ("timed out",),
     "the connection timed out", OFFLINE_HINT),
    ("dropped", ("RemoteProtocolError", "ReadError"), ("consistency check failed",),
     "the connection was cut off", RESUME_HINT),
)  # fmt: skip


class GatedWeightsError(WeightsError):
    """The Hub refused the token (401) or the licence is not accepted (403)."""

    def __init__(self, message: str, *, hint: str, status: int, repo: str, server: str) -> None:
        super().__init__(message, hint=hint)
        self.status, self.repo = status, repo
        self.server_message = server  # the Hub's own X-Error-Message, redacted


class HubOfflineError(WeightsError):
    """The Hub (or its CDN) could not be reached, or a transfer kept breaking."""

    def __init__(self, message: str, *, hint: str, kind: str, host: str, reason: str) -> None:
        super().__init__(message, hint=hint)
        self.kind, self.host, self.reason = kind, host, reason


class WeightsIntegrityError(WeightsError):
    """A downloaded file did not match the Hub's checksum or size; it was discarded."""


class WeightsCancelledError(WeightsError, InstallCancelledError):
    """The user cancelled; the partial file is kept so the next run resumes."""


def runner_error(
    info: dict[str, Any], *, repo: str, endpoint: str, proxies: ProxyConfig, has_token: bool
) -> WeightsError:
    """The exception for the runner's ``error`` line (``info``)."""
    status, code = info.get("status"), str(info.get("code") or "")
    if status == 407:  # a plain-http request answered by the proxy itself
        asked = f"{endpoint.split('://')[0]}://{info['host']}" if info.get("host") else endpoint
        return _proxy_auth(asked, proxies)
    if status == 403 or (status == 401 and code != "RepoNotFound"):
        why, hint = GATED[(status, has_token or status == 403)]
        return GatedWeightsError(
            f"The Hugging Face Hub refused access to {repo} ({why}).",
            hint=hint.format(repo=repo, page=f"{PUBLIC_HUB}/{repo}", tokens=TOKENS_PAGE),
            status=status, repo=repo, server=redact(str(info.get("server") or ""))[:300],
        )  # fmt: skip
    if status is None and not info.get("kind") and not info.get("strerror"):
        return _transport_error(info, endpoint=endpoint, proxies=proxies)
    case = info.get("kind") or ("write" if status is None else "missing" if status in (401, 404)
                                else "429" if status == 429 else "http")  # fmt: skip
    what = str(info.get("what") or "")
    missing = {  # what a 404 (or an anonymous 401) lacks, by the Hub's X-Error-Code
        "RepoNotFound": f"repository {repo}",
        "RevisionNotFound": f"such revision of {repo} (the [weights] revision)",
    }.get(code, f"{what or 'such file'} in {repo}")
    check = f"Check the token can read {repo} ({TOKENS_PAGE}); check" if status == 401 else "Check"
    gigabytes = {key: int(info.get(key) or 0) / 1e9 for key in ("needed", "free")}
    fields = {**info, **gigabytes, "repo": repo, "host": host_of(endpoint), "missing": missing,
              "check": check, "what": what or DEFAULT_WHAT.get(case, ""),
              "actual": str(info.get("actual")), "expected": str(info.get("expected"))}  # fmt: skip
    message, hint = SENTENCES[case]
    error = WeightsIntegrityError if case == "integrity" else WeightsError
    return error(message.format(**fields), hint=hint.format(**fields))


def _proxy_auth(endpoint: str, proxies: ProxyConfig) -> HubOfflineError:
    proxy, host = proxies.for_url(endpoint), host_of(endpoint)
    reason = proxy_auth_reason(proxy_netloc(proxy), has_credentials(proxy))
    return HubOfflineError(
        f"Could not reach the Hugging Face Hub at {host}: {reason}.",
        hint=PROXY_HINT.format(setting=proxies.setting_for(endpoint)),
        kind="proxy-auth", host=host, reason="HTTP 407",
    )  # fmt: skip


def _transport_error(info: dict[str, Any], *, endpoint: str, proxies: ProxyConfig) -> WeightsError:
    chain = [(str(name), str(text)) for name, text in info.get("chain", [])]
    names = {name for name, _ in chain}
    text = redact(" ".join(t for _, t in chain)).lower()
    via = proxy_netloc(proxies.for_url(endpoint))
    # The innermost cause names the problem; the outer ones are the library's wrapping.
    name, last = chain[-1] if chain else ("error", "")
    short = redact(last.strip().splitlines()[0] if last.strip() else name)[:200]
    if "407" in text and (via or "ProxyError" in names):
        return _proxy_auth(endpoint, proxies)
    if "ProxyError" in names or (via and names & {"ConnectError", "ConnectTimeout"}):
        kind, reason = "proxy", f"the proxy {via or ''} could not be reached or refused to connect"
        hint = PROXY_HINT.format(setting=proxies.setting_for(endpoint))
    elif "certificate" in text or "SSLError" in names or "ssl" in text:
        kind, hint, reason = "tls", TLS_HINT, f"the TLS handshake failed ({short})"
        if "certificate_verify_failed" in text or "certificate verify failed" in text:
            reason = "its TLS certificate is not trusted on this computer"
    else:
        kind, _, _, reason, hint = next(
            (row for row in TRANSPORT if names & set(row[1]) or any(w in text for w in row[2])),
            ("other", (), (), short, OFFLINE_HINT),
        )
    host = host_of(endpoint)
    return HubOfflineError(
        f"Could not reach the Hugging Face Hub at {host}: {reason.replace('  ', ' ')}.",
        hint=hint, kind=kind, host=host, reason=reason,
    )  # fmt: skip
