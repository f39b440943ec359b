"""Why samgeo-api stopped or failed, from its exit code, signal and last lines.

The same text patterns classify samgeo-api's HTTP 500 answers (a failed model
load or weight download reaches the client as a 500 with the exception text),
so ``/ml/status`` can give one hint for both, and the client gets a sentence
(:func:`explain_answer`) instead of a library's raw text.
"""

from __future__ import annotations

import re
import signal
import time
from dataclasses import dataclass, field
from enum import StrEnum

from geolibre_env.redact import redact


class ExitCause(StrEnum):
    STOPPED = "stopped"  # we asked it to stop
    IDLE_UNLOADED = "idle_unloaded"
    CUDA_OOM = "cuda_out_of_memory"
    NO_NVIDIA_DRIVER = "no_nvidia_driver"
    MISSING_MODULE = "missing_module"
    PORT_IN_USE = "port_in_use"
    WEIGHTS_GATED = "weights_gated"
    WEIGHTS_MISSING = "weights_missing"
    OFFLINE = "network_offline"
    OOM_KILLED = "killed_out_of_memory"
    SEGFAULT = "segfault"
    COMMAND_NOT_FOUND = "command_not_found"
    START_STALLED = "start_stalled"
    START_TIMEOUT = "start_timeout"
    UNRESPONSIVE = "unresponsive"
    CRASHED = "crashed"
    OUT_OF_MEMORY = "out_of_memory"
    WEIGHTS_DAMAGED = "weights_damaged"
    DISK_FULL = "disk_full"
    REQUEST_FAILED = "request_failed"  # an answer we do not recognise (never an exit)


@dataclass(frozen=True)
class _Rule:
    cause: ExitCause
    pattern: re.Pattern[str]


# Most specific first: a CUDA OOM traceback also mentions "RuntimeError".
_RULES: tuple[_Rule, ...] = tuple(
    _Rule(cause, re.compile(pattern, re.I))
    for cause, pattern in (
        (ExitCause.CUDA_OOM, r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED"),
        (
            ExitCause.OUT_OF_MEMORY,
            r"DefaultCPUAllocator: can't allocate memory|Cannot allocate memory|MemoryError"
            r"|\[enforce fail at alloc_cpu",
        ),
        (ExitCause.DISK_FULL, r"No space left on device|Errno 28\b"),
        (
            ExitCause.NO_NVIDIA_DRIVER,
            r"Found no NVIDIA driver|no CUDA-capable device|CUDA driver initialization failed"
            r"|Torch not compiled with CUDA enabled|NVIDIA driver on your system is too old",
        ),
        (ExitCause.MISSING_MODULE, r"ModuleNotFoundError|No module named|ImportError:"),
        (ExitCause.PORT_IN_USE, r"address already in use|Errno 98|Errno 48|WinError 10048"),
        (
            ExitCause.WEIGHTS_GATED,
            r"GatedRepoError|gated repo|is restricted|401 Client Error|403 Client Error"
            r"|Access to model .* is restricted|Invalid user token|401 Unauthorized"
            r"|is not a valid model identifier",
        ),
        (
            # Before OFFLINE: "couldn't connect ... and couldn't find them in the cached
            # files" means the weights are not here; the network is only the second reason.
            ExitCause.WEIGHTS_MISSING,
            r"couldn't find them in the cached files|cannot find the requested files"
            r"|LocalEntryNotFoundError|outgoing traffic has been disabled",
        ),
        (
            ExitCause.OFFLINE,
            r"Name or service not known|Temporary failure in name resolution|getaddrinfo failed"
            r"|Failed to establish a new connection|Max retries exceeded|ConnectError"
            r"|ConnectionError|ConnectTimeout|HTTPSConnectionPool|NameResolutionError"
            r"|Read timed out|ProxyError|CERTIFICATE_VERIFY_FAILED|SSLError"
            r"|Network is unreachable|nodename nor servname|Connection refused",
        ),
        (
            ExitCause.WEIGHTS_DAMAGED,
            r"Error while deserializing header|SafetensorError|HeaderTooLarge"
            r"|PytorchStreamReader failed|invalid load key|failed finding central directory",
        ),
        (
            ExitCause.WEIGHTS_MISSING,
            r"HF_HUB_OFFLINE|Checkpoint path .* does not exist"
            r"|No such file or directory: .*(sam3|bpe_simple_vocab)",
        ),
        (ExitCause.SEGFAULT, r"Segmentation fault|SIGSEGV"),
    )
)

HINTS: dict[ExitCause, str] = {
    ExitCause.STOPPED: "Start the backend again when you need it.",
    ExitCause.IDLE_UNLOADED: "It starts again by itself with the next segmentation request.",
    ExitCause.CUDA_OOM: (
        "The GPU ran out of memory: close other programs using the GPU, segment a smaller "
        "image or tile, or restart the backend to free memory held by loaded models."
    ),
    ExitCause.NO_NVIDIA_DRIVER: (
        "SAM 3's meta backend needs an NVIDIA GPU with a working driver. Install or update the "
        "NVIDIA driver, or use the transformers backend (slow on the CPU)."
    ),
    ExitCause.MISSING_MODULE: (
        "The model environment is incomplete. Run `geolibre-ml repair` (or Install again from "
        "the app)."
    ),
    ExitCause.PORT_IN_USE: (
        "Another program holds the backend's port. The sidecar picks a new free port when it "
        "retries; if you set a fixed port, choose another or stop the program using it."
    ),
    ExitCause.WEIGHTS_GATED: (
        "Hugging Face refused the SAM 3 weights: accept the licence for facebook/sam3 on the Hub, "
        "give the installer a token that can read gated repositories, then retry."
    ),
    ExitCause.WEIGHTS_MISSING: (
        "The SAM 3 weights are not on this computer. Run `geolibre-ml install` (with a Hub "
        "token) to download them, or point SAM3_CHECKPOINT_PATH at a local checkpoint."
    ),
    ExitCause.OFFLINE: (
        "The backend needed the network and could not reach it. Download the weights ahead of "
        "time with `geolibre-ml install`, or check the proxy settings."
    ),
    ExitCause.OOM_KILLED: (
        "The system killed the backend, most likely because memory ran out. Close other "
        "programs or segment a smaller image."
    ),
    ExitCause.SEGFAULT: "The backend crashed inside native code. Run `geolibre-ml doctor` and "
    "include its report (`geolibre-ml doctor --bundle`) in a bug report.",
    ExitCause.COMMAND_NOT_FOUND: (
        "The backend command was not found. Install the model backend from the app or with "
        "`geolibre-ml install`, or fix GEOLIBRE_ML_SAMGEO_CMD."
    ),
    ExitCause.START_STALLED: (
        "The backend stopped making progress while starting. Check its log; `geolibre-ml doctor` "
        "shows the last lines."
    ),
    ExitCause.START_TIMEOUT: "The backend took too long to start. Check its log, or raise "
    "GEOLIBRE_ML_START_TIMEOUT_S on a slow machine.",
    ExitCause.UNRESPONSIVE: "The backend stopped answering while idle and was restarted.",
    ExitCause.CRASHED: "The backend exited unexpectedly. Its last lines are in the status and "
    "in `geolibre-ml doctor`.",
    ExitCause.OUT_OF_MEMORY: (
        "The computer ran out of memory while SAM 3 ran (on the CPU it needs about 16 GB): "
        "close other programs, or segment a smaller image or tile."
    ),
    ExitCause.WEIGHTS_DAMAGED: (
        "The SAM 3 weights on disk are damaged (an interrupted copy?): remove them with "
        "`geolibre-ml uninstall --weights`, then install again with `geolibre-ml install "
        "--ask-token`."
    ),
    ExitCause.DISK_FULL: "The disk is full: free some space, then try again.",
    ExitCause.REQUEST_FAILED: (
        "The backend's log has the details: `geolibre-ml doctor` shows its last lines, and "
        "`geolibre-ml doctor --bundle` makes a report to attach to a bug report."
    ),
}

# Causes that a restart cannot fix: retrying would only loop.
PERMANENT_CAUSES = frozenset(
    {
        ExitCause.NO_NVIDIA_DRIVER,
        ExitCause.MISSING_MODULE,
        ExitCause.WEIGHTS_GATED,
        ExitCause.WEIGHTS_MISSING,
        ExitCause.WEIGHTS_DAMAGED,
        ExitCause.COMMAND_NOT_FOUND,
    }
)


@dataclass(frozen=True)
class ExitReport:
    """What happened, in one sentence, with the user's next step."""

    cause: ExitCause
    summary: str
    hint: str
    returncode: int | None = None
    signal_name: str | None = None
    last_lines: tuple[str, ...] = ()
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, object]:
        return {
            "cause": self.cause.value,
            "summary": self.summary,
            "hint": self.hint,
            "returncode": self.returncode,
            "signal": self.signal_name,
            "last_lines": list(self.last_lines),
            "at": self.at,
        }


def classify_text(text: str) -> ExitCause | None:
    """The cause a piece of output or an error body points at, if any."""
    for rule in _RULES:
        if rule.pattern.search(text):
            return rule.cause
    return None


def _signal_name(returncode: int | None) -> str | None:
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def classify_exit(
    returncode: int | None,
    output_tail: str,
    *,
    stopped_by_us: bool = False,
    during_start: bool = False,
) -> ExitReport:
    """Classify a backend exit. ``returncode`` < 0 means killed by that signal."""
    lines = tuple(redact(output_tail).strip().splitlines()[-20:])
    sig = _signal_name(returncode)
    if stopped_by_us:
        cause = ExitCause.STOPPED
    elif returncode == 127:
        cause = ExitCause.COMMAND_NOT_FOUND
    else:
        cause = classify_text("\n".join(lines)) or (
            ExitCause.OOM_KILLED
            if sig == "SIGKILL"
            else ExitCause.SEGFAULT
            if sig == "SIGSEGV"
            else ExitCause.CRASHED
        )
    how = (
        f"was killed by {sig}"
        if sig
        else f"exited with code {returncode}"
        if returncode is not None
        else "exited"
    )
    when = " while starting" if during_start else ""
    summary = (
        "samgeo-api was stopped."
        if cause is ExitCause.STOPPED
        else f"samgeo-api {how}{when}: {describe(cause)}."
    )
    return ExitReport(cause, summary, HINTS[cause], returncode, sig, lines)


def report(cause: ExitCause, summary: str, output_tail: str = "") -> ExitReport:
    """A report for a failure that is not an exit (stall, timeout, idle unload)."""
    lines = tuple(redact(output_tail).strip().splitlines()[-20:])
    return ExitReport(cause, summary, HINTS[cause], last_lines=lines)


def describe(cause: ExitCause) -> str:
    return {
        ExitCause.STOPPED: "stopped on request",
        ExitCause.IDLE_UNLOADED: "stopped after being idle, to free memory",
        ExitCause.CUDA_OOM: "the GPU ran out of memory",
        ExitCause.NO_NVIDIA_DRIVER: "no usable NVIDIA GPU or driver",
        ExitCause.MISSING_MODULE: "a Python module is missing from the model environment",
        ExitCause.PORT_IN_USE: "its port is already in use",
        ExitCause.WEIGHTS_GATED: "Hugging Face refused access to the gated SAM 3 weights",
        ExitCause.WEIGHTS_MISSING: "the SAM 3 weights are missing",
        ExitCause.OFFLINE: "it needed the network and could not reach it",
        ExitCause.OOM_KILLED: "killed by the system, most likely out of memory",
        ExitCause.SEGFAULT: "it crashed in native code",
        ExitCause.COMMAND_NOT_FOUND: "the command was not found",
        ExitCause.START_STALLED: "it stopped making progress while starting",
        ExitCause.START_TIMEOUT: "it took too long to start",
        ExitCause.UNRESPONSIVE: "it stopped answering",
        ExitCause.CRASHED: "it crashed",
        ExitCause.OUT_OF_MEMORY: "the computer ran out of memory",
        ExitCause.WEIGHTS_DAMAGED: "the SAM 3 weights on disk are damaged",
        ExitCause.DISK_FULL: "the disk is full",
        ExitCause.REQUEST_FAILED: "it failed on this request",
    }[cause]


@dataclass(frozen=True)
class Explanation:
    """A backend's error answer as the user sees it: a sentence, a cause, a next step."""

    cause: ExitCause
    detail: str
    hint: str


# What a failed download was after, named in the user's words.
_WANTED = (
    (re.compile(r"bpe_simple_vocab", re.I), "SAM 3's tokenizer vocabulary"),
    (re.compile(r"sam3|\.safetensors|\.pt\b|config\.json", re.I), "the SAM 3 weights"),
)
_HOST = re.compile(r"host='([^']+)'|https?://([A-Za-z0-9.-]+)")
MAX_QUOTED_CHARS = 200


def explain_answer(status: int, text: str) -> Explanation:
    """samgeo-api's error answer (its ``detail``, often a library's raw exception
    text) as one sentence with a cause and a hint; the raw text is for the log."""
    raw = redact(text).strip()
    cause = classify_text(raw)
    if cause is None:
        first = next((line.strip() for line in raw.splitlines() if line.strip()), "")
        if len(first) > MAX_QUOTED_CHARS:
            first = first[: MAX_QUOTED_CHARS - 1].rstrip() + "…"
        said = f": {first.rstrip('.')}" if first else " without saying why"
        return Explanation(
            ExitCause.REQUEST_FAILED,
            f"samgeo-api failed on this request (HTTP {status}){said}.",
            HINTS[ExitCause.REQUEST_FAILED],
        )
    what = describe(cause)
    if cause is ExitCause.OFFLINE:
        host = _HOST.search(raw)
        where = f" ({host.group(1) or host.group(2)})" if host else ""
        wanted = next((name for pattern, name in _WANTED if pattern.search(raw)), None)
        purpose = f" to download {wanted}" if wanted else ""
        what = f"it needed the network{where}{purpose} and could not reach it"
    return Explanation(cause, f"samgeo-api could not segment: {what}.", HINTS[cause])
