"""Exit classification from exit codes, signals and the last lines of output."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from geolibre_env.backend.exit_causes import (
    HINTS,
    ExitCause,
    classify_exit,
    classify_text,
    explain_answer,
)

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


# samgeo-api's error answers -----------------------------------------------------------
RECORDED = json.loads(
    (
        Path(__file__).parents[1] / "fixtures/backend_errors/samgeo-api-1.4.2-no-weights.json"
    ).read_text()
)
RAW_MARKERS = ("HTTPSConnectionPool", "We couldn't connect", "Caused by", "Client Error", "\n")


@pytest.mark.parametrize(
    ("case", "cause", "words"),
    [
        ("text backend=transformers, HF_HUB_OFFLINE=unset", ExitCause.WEIGHTS_MISSING,
         "the SAM 3 weights are missing"),
        ("text backend=transformers, HF_HUB_OFFLINE=1", ExitCause.WEIGHTS_MISSING,
         "the SAM 3 weights are missing"),
        ("text backend=meta, HF_HUB_OFFLINE=1", ExitCause.OFFLINE,
         "it needed the network (huggingface.co) to download SAM 3's tokenizer vocabulary"),
        ("text backend=transformers, Hub answers gated (no-token)", ExitCause.WEIGHTS_GATED,
         "Hugging Face refused access"),
        ("text backend=transformers, Hub answers gated (token-not-granted)",
         ExitCause.WEIGHTS_GATED, "Hugging Face refused access"),
    ],
)  # fmt: skip
def test_recorded_samgeo_answers_become_one_sentence_with_cause_and_hint(case, cause, words):
    answer = RECORDED[case]
    explained = explain_answer(answer["status"], answer["body"]["detail"])
    assert explained.cause is cause
    assert words in explained.detail
    assert explained.detail.startswith("samgeo-api could not segment: ")
    assert explained.detail.endswith(".") and not explained.detail.endswith("..")
    assert not any(marker in explained.detail for marker in RAW_MARKERS)
    assert explained.hint == HINTS[cause]


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8589934592 bytes. "
         "Error code 12 (Cannot allocate memory)", ExitCause.OUT_OF_MEMORY),
        ("Error while deserializing header: HeaderTooLarge", ExitCause.WEIGHTS_DAMAGED),
        ("[Errno 28] No space left on device", ExitCause.DISK_FULL),
        ("Cannot find the requested files in the disk cache and outgoing traffic has been "
         "disabled. To enable hf.co look-ups and downloads online, set 'HF_HUB_OFFLINE=0'",
         ExitCause.WEIGHTS_MISSING),
        ("Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU",
         ExitCause.NO_NVIDIA_DRIVER),
    ],
)  # fmt: skip
def test_library_failures_are_classified(text, cause):
    assert explain_answer(500, text).cause is cause


def test_an_unrecognised_answer_is_still_a_sentence_quoting_one_trimmed_line():
    raw = "KeyError: 'pred_masks'\n" + "  File x.py, line 3\n" * 50
    explained = explain_answer(500, raw)
    assert explained.cause is ExitCause.REQUEST_FAILED
    assert (
        explained.detail == "samgeo-api failed on this request (HTTP 500): KeyError: 'pred_masks'."
    )
    assert "doctor" in explained.hint
    long = explain_answer(500, "x" * 5000).detail
    assert len(long) < 300 and long.endswith("….")
    assert (
        explain_answer(500, "").detail
        == "samgeo-api failed on this request (HTTP 500) without saying why."
    )


def test_a_secret_in_the_answer_never_reaches_the_sentence():
    token = "hf_abcdefghijklmnopqrstuvwxyz0123"
    explained = explain_answer(500, f"ValueError: bad request with token {token}")
    assert token not in explained.detail and "***" in explained.detail
