"""Exit classification from exit codes, signals and the last lines of output."""

from __future__ import annotations

import signal

import pytest
from geolibre_env.exit_causes import ExitCause, classify_exit, classify_text

TRACEBACK = 'Traceback (most recent call last):\n  File "api.py", line 1, in <module>\n'


@pytest.mark.parametrize(
    ("tail", "cause"),
    [
        (TRACEBACK + "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
         ExitCause.CUDA_OOM),
        (TRACEBACK + "RuntimeError: Found no NVIDIA driver on your system. Please check",
         ExitCause.NO_NVIDIA_DRIVER),
        (TRACEBACK + "ModuleNotFoundError: No module named 'sam3'", ExitCause.MISSING_MODULE),
        ("ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000): "
         "address already in use", ExitCause.PORT_IN_USE),
        ("huggingface_hub.errors.GatedRepoError: 401 Client Error. Cannot access gated repo",
         ExitCause.WEIGHTS_GATED),
        ("requests.exceptions.ConnectionError: Max retries exceeded with url: /facebook/sam3 "
         "(Caused by NameResolutionError: Temporary failure in name resolution)",
         ExitCause.OFFLINE),
        ("huggingface_hub.errors.LocalEntryNotFoundError: outgoing traffic has been disabled",
         ExitCause.WEIGHTS_MISSING),
        ("ValueError: Checkpoint path /data/sam3.pt does not exist.", ExitCause.WEIGHTS_MISSING),
    ],
)  # fmt: skip
def test_known_failures_are_recognised(tail, cause):
    report = classify_exit(1, tail)
    assert report.cause is cause
    assert report.hint and report.summary.startswith("samgeo-api exited with code 1")
    assert classify_text(tail) is cause


def test_sigkill_we_did_not_send_is_reported_as_the_system_killing_it():
    report = classify_exit(-signal.SIGKILL, "INFO: loading model")
    assert report.cause is ExitCause.OOM_KILLED
    assert report.signal_name == "SIGKILL"
    assert "memory" in report.hint


def test_segfault_and_unknown_crash():
    assert classify_exit(-signal.SIGSEGV, "").cause is ExitCause.SEGFAULT
    assert classify_exit(3, "something odd").cause is ExitCause.CRASHED


def test_command_not_found_and_stopped_by_us():
    assert classify_exit(127, "geolibre: cannot start x").cause is ExitCause.COMMAND_NOT_FOUND
    assert classify_exit(-signal.SIGTERM, "", stopped_by_us=True).cause is ExitCause.STOPPED


def test_secrets_in_the_last_lines_are_redacted():
    report = classify_exit(1, "Error with token hf_abcdefghijklmnopqrstuvwxyz0123 in request")
    assert "hf_abcdefghijklmnopqrstuvwxyz0123" not in "\n".join(report.last_lines)
