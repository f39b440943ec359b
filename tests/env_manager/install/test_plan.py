"""The install plan, decided from machines against the real pinned spec.

Every test loads installers/model-env.toml through load_spec(), so a change
to the spec that breaks a rule (a driver minimum, an architecture list, the
order of the builds) fails here.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from geolibre_env.errors import ConfigError
from geolibre_env.install.plan import (
    ExistingEnv,
    InstallPlan,
    make_plan,
    source_targets,
)
from geolibre_env.install.plan_disk import DISK_HEADROOM_BYTES
from geolibre_env.install.source_check import SourceAnswer
from geolibre_env.machine.detect import DiskSpace, Machine, PythonInstall
from geolibre_env.machine.nvidia import Gpu, arch_key, version_key
from geolibre_env.paths import Paths
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import load_spec

SPEC = load_spec()
GIB = 2**30
GB = 10**9
FIXTURES = Path(__file__).parents[1] / "fixtures" / "machines"
PY311 = PythonInstall("3.11.9", "/usr/bin/python3.11")
PY312 = PythonInstall("3.12.4", "/usr/bin/python3.12")


def settings(**overrides) -> EnvSettings:
    return EnvSettings(paths=Paths.resolve(Path("/home/ana/geolibre")), **overrides)


def disks(free: int, devices: tuple[int, int, int] = (7, 7, 7)) -> tuple[DiskSpace, ...]:
    paths = ("/home/ana/geolibre/data/model-env", "/home/ana/geolibre/cache/uv", "/home/ana/hf")
    purposes = ("environment", "cache", "weights")
    return tuple(
        DiskSpace(purpose, path, free, 2 * free, device)
        for purpose, path, device in zip(purposes, paths, devices, strict=True)
    )


def machine(
    *capabilities: str,
    driver: str | None = "580.65.06",
    os: str = "linux",
    memory: int = 32 * GIB,
    gpu_mib: int | None = 24576,
    pythons: tuple[PythonInstall, ...] = (PY311, PY312),
    free: int = 500 * GB,
    smi_error: str | None = None,
    arch: str = "x86_64",
    apple_silicon: bool = False,
    devices: tuple[int, int, int] = (7, 7, 7),
) -> Machine:
    gpus = tuple(
        Gpu(i, f"GPU {cap}", driver, cap, gpu_mib, gpu_mib, f"GPU-{i}", "nvidia-smi")
        for i, cap in enumerate(capabilities)
    )
    if not gpus and smi_error is None and os != "macos":
        smi_error = "nvidia-smi was not found (looked for: nvidia-smi)."
    return Machine(
        os=os,
        arch=arch,
        cpu_count=8,
        memory_total_bytes=memory,
        gpus=gpus,
        driver_version=driver if gpus else None,
        driver_source="nvidia-smi" if gpus else None,
        nvidia_smi_error=smi_error,
        apple_silicon=apple_silicon,
        pythons=pythons,
        disks=disks(free, devices),
    )


def plan_for(m: Machine, **kwargs) -> InstallPlan:
    return make_plan(m, SPEC, settings(), **kwargs)


T, M = "transformers", "meta"
APPLE = machine(os="macos", arch="arm64", apple_silicon=True)
PY310 = PythonInstall("3.10.12", "/usr/bin/python3")


def win(driver: str) -> Machine:
    return machine("8.6", driver=driver, os="windows")


# (id, machine, torch build installed, SAM 3 backend, can run SAM 3, Python minor).
# On Linux without a usable GPU the build installed is the package index's torch,
# the cu130 wheel, running on the CPU (transformers backend); on Windows and Macs
# the package index's torch is the CPU build.
TABLE = [
    # Linux driver minimums: CUDA 12.x needs 525.60.13, CUDA 13.0 needs 580.65.06.
    ("linux-525.60.12", machine("8.6", driver="525.60.12"), "cu130", T, True, "3.11"),
    ("linux-525.60.13", machine("8.6", driver="525.60.13"), "cu126", M, True, "3.11"),
    ("linux-580.65.05", machine("8.6", driver="580.65.05"), "cu126", M, True, "3.11"),
    ("linux-580.65.06", machine("8.6", driver="580.65.06"), "cu130", M, True, "3.11"),
    # Windows driver minimums: 528.33 and 580.88.
    ("win-528.32", win("528.32"), "cpu", T, True, "3.11"),
    ("win-528.33", win("528.33"), "cu126", M, True, "3.11"),
    ("win-580.87", win("580.87"), "cu126", M, True, "3.11"),
    ("win-580.88", win("580.88"), "cu130", M, True, "3.11"),
    # Compute capabilities on a current driver.
    ("kepler-3.5", machine("3.5"), "cu130", T, True, "3.11"),
    ("maxwell-5.0", machine("5.0"), "cu126", M, True, "3.11"),
    ("pascal-6.1", machine("6.1"), "cu126", M, True, "3.11"),
    ("volta-7.0", machine("7.0"), "cu126", M, True, "3.11"),
    ("turing-7.5", machine("7.5"), "cu130", M, True, "3.11"),
    ("ampere-8.6", machine("8.6"), "cu130", M, True, "3.11"),
    ("ada-8.9", machine("8.9"), "cu130", M, True, "3.11"),
    ("hopper-9.0", machine("9.0"), "cu130", M, True, "3.11"),
    ("blackwell-12.0", machine("12.0"), "cu130", M, True, "3.11"),
    ("future-13.0", machine("13.0"), "cu130", T, True, "3.11"),
    # Blackwell on a driver older than 580: only cu128 has its kernels.
    ("blackwell-12.0-575", machine("12.0", driver="575.64.03"), "cu128", M, True, "3.11"),
    ("blackwell-10.0-570", machine("10.0", driver="570.86.15"), "cu128", M, True, "3.11"),
    # Volta on a 550 driver: cu126 (torch 2.14.1) is preferred over cu128 (2.9.1).
    ("volta-7.0-550", machine("7.0", driver="550.127.05"), "cu126", M, True, "3.11"),
    # Several GPUs: one build must cover them all.
    ("pascal+ampere", machine("6.1", "8.6"), "cu126", M, True, "3.11"),
    ("pascal+blackwell", machine("6.1", "12.0"), "cu130", T, True, "3.11"),
    ("kepler+ampere", machine("3.5", "8.6"), "cu130", T, True, "3.11"),
    # No GPU, Macs, memory, Pythons.
    ("no-gpu", machine(), "cu130", T, True, "3.11"),
    ("no-gpu-8gb", machine(memory=8 * GIB), "cu130", T, False, "3.11"),
    ("no-gpu-16gb", machine(memory=int(15.5 * GIB)), "cu130", T, True, "3.11"),
    ("apple-silicon", APPLE, "cpu", T, True, "3.11"),
    ("only-3.12", machine("8.6", pythons=(PY312,)), "cu130", M, True, "3.12"),
    ("no-python", machine("8.6", pythons=(PY310,)), "cu130", M, True, None),
    # Other platforms without a GPU.
    ("no-gpu-linux-arm64", machine(arch="arm64"), "cu130", T, True, "3.11"),
    ("no-gpu-windows", machine(os="windows"), "cpu", T, True, "3.11"),
]


@pytest.mark.parametrize(
    ("m", "build", "backend", "can_run", "python"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_decision_table(m, build, backend, can_run, python):
    plan = plan_for(m)
    assert plan.torch_build.name == build
    assert plan.sam3_backend == backend
    assert plan.can_run_sam3 is can_run
    assert (plan.python.minor if plan.python else None) == python
    assert plan.ok is (python is not None)


def test_every_cuda_build_in_the_spec_is_chosen_by_some_machine():
    chosen = {plan_for(row[1]).torch_build.name for row in TABLE}
    assert {b.name for b in SPEC.torch_builds} <= chosen


def test_spec_builds_are_well_formed():
    names = [b.name for b in (*SPEC.torch_builds, SPEC.torch_cpu)]
    assert len(names) == len(set(names))
    assert not SPEC.torch_cpu.is_cuda
    for build in SPEC.torch_builds:
        assert build.is_cuda and build.archs
        assert all(arch_key(a) for a in build.archs), build.name
        version_key(build.min_driver_linux)
        version_key(build.min_driver_windows)


# ---------------------------------------------------------------------------
# Why: the reasons name the facts and the fix


def test_old_driver_reason_names_the_driver_to_install():
    plan = plan_for(machine("8.6", driver="525.60.12"))
    assert "525.60.12" in plan.reason("torch")
    assert any("Update the NVIDIA driver to 525.60.13 or newer" in w for w in plan.warnings)


def test_kepler_is_called_too_old_for_current_pytorch():
    plan = plan_for(machine("3.5"))
    assert "too old for current PyTorch" in plan.reason("torch")
    assert "5.0" in plan.reason("torch")


def test_a_too_old_second_gpu_is_named_with_the_way_out():
    plan = plan_for(machine("3.5", "8.6"))
    assert any("Remove or disable GPU 3.5 to use GPU 8.6" in w for w in plan.warnings)


def test_mixed_gpus_no_build_covers_says_what_each_build_lacks():
    reason = plan_for(machine("6.1", "12.0")).reason("torch")
    assert "No single CUDA build" in reason
    assert "cu130 has no kernels for compute capability 6.1" in reason


def test_the_chosen_build_says_why_earlier_builds_were_skipped():
    reason = plan_for(machine("7.0")).reason("torch")
    assert "cu130 has no kernels for compute capability 7.0" in reason
    assert "NVIDIA driver 580.65.06 runs CUDA 12.6" in reason


def test_a_mac_statement_says_meta_cannot_run_and_transformers_is_slow():
    plan = plan_for(Machine.from_dict(json.loads((FIXTURES / "macbook-air-m2.json").read_text())))
    assert plan.torch_build.name == "cpu"
    assert plan.python == PythonInstall("3.12.8", "/opt/homebrew/bin/python3.12")
    assert "On a Mac, SAM 3's meta backend cannot run" in plan.sam3_statement
    assert "minutes per image" in plan.sam3_statement
    assert plan.torch_index_url == "https://pypi.org/simple"  # PyTorch's Mac wheels are PyPI's


def test_an_intel_mac_is_told_pytorch_has_no_build_for_it():
    plan = plan_for(machine(os="macos", arch="x86_64"))
    assert not plan.ok
    assert any("Intel Macs" in p for p in plan.problems)


def test_without_a_gpu_the_statement_is_plain():
    plan = plan_for(machine())
    assert plan.sam3_statement == (
        "Without a usable NVIDIA GPU, SAM 3's meta backend cannot run here; the transformers "
        "backend runs on the CPU, expect minutes per image."
    )


def test_little_memory_without_gpu_cannot_run_sam3_and_says_so():
    plan = plan_for(machine(memory=8 * GIB))
    assert not plan.can_run_sam3
    assert "8 GB of memory" in plan.sam3_statement and "16 GB" in plan.sam3_statement
    assert plan.sam3_statement in plan.warnings


def test_no_python_is_a_problem_with_the_fix():
    plan = plan_for(machine("8.6", pythons=(PythonInstall("3.13.1", "/usr/bin/python3.13"),)))
    assert plan.python is None
    (problem,) = plan.problems
    assert "found only 3.13.1" in problem and "uv python install 3.12" in problem


def test_the_newest_patch_release_is_preferred():
    older = PythonInstall("3.11.2", "/usr/bin/python3.11")
    newer = PythonInstall("3.11.7", "/opt/python3.11")
    assert plan_for(machine(pythons=(older, newer, PY312))).python == newer


# ---------------------------------------------------------------------------
# SAM 3 backend and GPU memory


def test_meta_requested_without_cuda_is_a_problem():
    plan = plan_for(machine(), backend="meta")
    assert not plan.ok and not plan.can_run_sam3
    assert any("Choose the transformers backend" in p for p in plan.problems)


def test_transformers_may_be_chosen_on_a_gpu():
    plan = plan_for(machine("8.6"), backend="transformers")
    assert plan.ok and plan.sam3_backend == "transformers" and plan.torch_build.name == "cu130"


def test_an_unknown_backend_is_refused():
    with pytest.raises(ConfigError):
        plan_for(machine(), backend="onnx")  # type: ignore[arg-type]


def test_a_small_gpu_gets_a_memory_warning_and_an_8_gb_card_does_not():
    small = plan_for(machine("7.5", gpu_mib=4096))
    assert any("4.0 GB of memory" in w and "roughly 8 GB" in w for w in small.warnings)
    assert small.can_run_sam3
    eight = plan_for(machine("8.9", gpu_mib=8188))  # how "8 GB" cards report themselves
    assert not any("GB of memory" in w for w in eight.warnings)


# ---------------------------------------------------------------------------
# Never downgrade


def test_a_failed_probe_keeps_a_working_cuda_environment():
    failed = machine(
        smi_error="nvidia-smi (/usr/bin/nvidia-smi) exited with code 9: NVIDIA-SMI has failed "
        "because it couldn't communicate with the NVIDIA driver."
    )
    existing = ExistingEnv("cu130", "2.14.1+cu130", True, ("NVIDIA GeForce RTX 4090",))
    plan = plan_for(failed, existing=existing)
    assert plan.torch_build.name == "cu130"
    assert plan.keeps_existing and plan.sam3_backend == "meta" and plan.can_run_sam3
    assert "must not replace a working CUDA install" in plan.reason("torch")
    assert "NVIDIA GeForce RTX 4090" in plan.sam3_statement
    assert any("reinstall the NVIDIA driver" in w for w in plan.warnings)


def test_a_missing_nvidia_smi_also_keeps_it():
    existing = ExistingEnv("cu126", "2.14.1+cu126", True, ("Tesla P40",))
    plan = plan_for(machine(), existing=existing)
    assert plan.torch_build.name == "cu126" and plan.keeps_existing


def test_a_gpu_that_is_really_gone_keeps_the_build_but_not_meta():
    gone = machine(
        smi_error="nvidia-smi (/usr/bin/nvidia-smi) exited with code 6: No devices were found"
    )
    existing = ExistingEnv("cu130", "2.14.1+cu130", True, ("NVIDIA GeForce RTX 3060",))
    plan = plan_for(gone, existing=existing)
    assert plan.torch_build.name == "cu130" and plan.keeps_existing
    assert plan.sam3_backend == "transformers"
    assert any("No NVIDIA GPU is visible now" in w for w in plan.warnings)


def test_without_a_working_existing_env_a_failed_probe_means_cpu_with_the_fix():
    failed = machine(smi_error="Failed to initialize NVML: Driver/library version mismatch")
    plan = plan_for(failed, existing=ExistingEnv("cu130", "2.14.1+cu130", False))
    assert not plan.gpu_ready and not plan.keeps_existing
    assert plan.sam3_backend == "transformers" and "runs on the CPU here" in plan.torch_label
    assert any("restart the computer" in w for w in plan.warnings)
    assert "NVIDIA GPU not checked" in plan.machine_summary


def test_a_probe_that_worked_may_replace_cuda_but_says_so():
    existing = ExistingEnv("cu126", "2.14.1+cu126", True, ("GPU 8.6",))
    plan = plan_for(machine("8.6", driver="470.256.02"), existing=existing)
    assert not plan.gpu_ready and plan.sam3_backend == "transformers"
    assert any("replaces the working cu126 environment" in w for w in plan.warnings)


def test_the_user_can_still_choose_the_cpu_build():
    existing = ExistingEnv("cu130", "2.14.1+cu130", True, ("NVIDIA GeForce RTX 4090",))
    plan = plan_for(machine(), existing=existing, build="cpu")
    assert plan.torch_build.name == "cpu" and plan.sam3_backend == "transformers"


# ---------------------------------------------------------------------------
# Disk


def test_low_disk_is_a_problem_with_the_numbers_and_the_fix():
    plan = plan_for(machine("8.6", free=10 * GB))
    # One drive: uv hard-links its cache into the environment, so only the unshared part counts.
    needed = SPEC.disk.env_bytes_cuda + SPEC.disk.cache_linked_bytes_cuda + SPEC.disk.weights_bytes
    (problem,) = plan.problems
    assert f"needs {needed / GB:.1f} GB" in problem and "10.0 GB is free" in problem
    assert "GEOLIBRE_ML_HOME" in problem
    assert f"{(needed + DISK_HEADROOM_BYTES - 10 * GB) / GB:.1f} GB" in problem


def test_purposes_on_one_filesystem_are_summed():
    d = SPEC.disk
    needed = d.env_bytes_cuda + d.cache_linked_bytes_cuda + d.weights_bytes
    # Enough for any one purpose, not for all three together.
    free = needed + DISK_HEADROOM_BYTES - 1
    shared = plan_for(machine(free=free))
    assert not shared.ok and len(shared.filesystems) == 1
    separate = plan_for(machine(free=free, devices=(1, 2, 3)))
    assert separate.ok and len(separate.filesystems) == 3
    # On a drive of its own the cache holds a full copy: uv cannot link across drives.
    cache = next(n for n in separate.disk_needs if n.purpose == "cache")
    assert cache.needed_bytes == d.cache_bytes_cuda


def test_the_disk_reason_quotes_the_spec_figures():
    plan = plan_for(machine(), build="cpu")
    assert f"{SPEC.disk.env_bytes_cpu / GB:.1f} GB for the environment" in plan.reason("disk")
    assert f"{SPEC.disk.env_bytes_cuda / GB:.1f} GB" in plan_for(machine()).reason("disk")
    cuda = plan_for(machine("8.6"))
    assert f"{SPEC.disk.env_bytes_cuda / GB:.1f} GB for the environment" in cuda.reason("disk")


def test_a_local_checkpoint_needs_no_weights_download():
    plan = make_plan(machine("8.6"), SPEC, settings(checkpoint_path=Path("/data/sam3.pt")))
    weights = next(n for n in plan.disk_needs if n.purpose == "weights")
    assert weights.needed_bytes == 0
    assert "local checkpoint" in plan.reason("disk")


# ---------------------------------------------------------------------------
# Where torch comes from


PYPI = "https://pypi.org/simple"
PYTORCH = "https://download.pytorch.org/whl/"


@pytest.mark.parametrize(
    ("m", "build", "url", "label"),
    [
        (machine(), None, PYPI,
         "torch 2.14.1+cu130 from the package index (pypi.org); runs on the CPU here"),
        (machine(arch="arm64"), None, PYPI, "torch 2.14.1+cu130 from the package index"),
        (machine("8.6"), None, PYPI,
         "torch 2.14.1+cu130 from the package index (pypi.org); runs on CUDA 13.0 here"),
        (machine("6.1"), None, PYTORCH + "cu126",
         "torch 2.14.1+cu126 from PyTorch's cu126 index (download.pytorch.org)"),
        (machine(), "cpu", PYTORCH + "cpu",
         "torch 2.14.1 (CPU build) from PyTorch's cpu index (download.pytorch.org)"),
        (machine(os="windows"), None, PYPI, "torch 2.14.1 (CPU build) from the package index"),
        (win("580.88"), None, PYTORCH + "cu130",
         "torch 2.14.1+cu130 from PyTorch's cu130 index (download.pytorch.org); runs on CUDA"),
        (APPLE, None, PYPI, "torch 2.14.1 (CPU build) from the package index (pypi.org)"),
    ],
    ids=["linux-no-gpu", "linux-arm-no-gpu", "linux-cu130", "linux-cu126", "linux-asked-cpu",
         "windows-no-gpu", "windows-gpu", "mac"],
)  # fmt: skip
def test_torch_comes_from_where_that_build_is_published(m, build, url, label):
    plan = plan_for(m, build=build)
    assert plan.torch_index_url == url
    assert plan.torch_label.startswith(label)
    assert plan.torch_label in plan.format_text()
    assert "It comes from " in plan.reason("torch")


def test_linux_without_gpu_says_the_package_index_wheel_is_larger_and_why():
    reason = plan_for(machine()).reason("torch")
    extra = (SPEC.disk.env_bytes_cuda - SPEC.disk.env_bytes_cpu) / GB
    assert f"{extra:.1f} GB larger than PyTorch's CPU build" in reason
    assert "--build cpu" in reason


@pytest.mark.parametrize(
    ("overrides", "m", "url"),
    [
        ({"torch_index_url": "https://mirror.example/pytorch/{build}/simple"}, machine("6.1"),
         "https://mirror.example/pytorch/cu126/simple"),
        ({"torch_index_url": "https://mirror.example/torch-cpu"}, machine(),
         "https://mirror.example/torch-cpu"),
        ({"pypi_index_url": "https://pypi.corp.example/simple"}, APPLE,
         "https://pypi.corp.example/simple"),
    ],
    ids=["template-gets-the-build", "plain-url-as-is", "mac-uses-the-pypi-mirror"],
)  # fmt: skip
def test_torch_index_from_settings(overrides, m, url):
    plan = make_plan(m, SPEC, settings(**overrides))
    assert plan.torch_index_url == url
    assert "your " in plan.reason("torch")  # says the URL came from the user's settings


def test_index_credentials_never_reach_the_text_or_the_dict():
    s = settings(torch_index_url="https://ana:s3cretpass@mirror.example/whl/{build}")
    plan = make_plan(machine("8.6"), SPEC, s)
    assert plan.torch_index_url == "https://ana:s3cretpass@mirror.example/whl/cu130"
    assert "s3cretpass" not in plan.format_text()
    assert "s3cretpass" not in json.dumps(plan.to_dict())


# ---------------------------------------------------------------------------
# Showing the plan


@pytest.mark.parametrize("row", TABLE, ids=[row[0] for row in TABLE])
def test_format_text_shows_every_reason_and_problem(row):
    plan = plan_for(row[1])
    text = plan.format_text()
    for reason in plan.reasons:
        assert reason.text in text
    for line in (*plan.problems, *plan.warnings, plan.sam3_statement):
        assert line in text
    assert ("Ready to install." in text) is plan.ok


def test_to_dict_is_json_ready_and_complete():
    plan = plan_for(machine("8.6", "8.6"))
    data = json.loads(json.dumps(plan.to_dict()))
    assert set(data["reasons"]) == {"python", "torch", "backend", "disk"}
    assert data["torch_build"]["name"] == "cu130"
    assert data["torch_requirements"] == ["torch==2.14.1", "torchvision==0.29.1"]
    assert data["ok"] is True and data["spec_fingerprint"] == SPEC.fingerprint
    assert data["filesystems"][0]["enough"] is True


# ---------------------------------------------------------------------------
# What the pinned wheels need from the OS


@pytest.mark.parametrize(
    ("m", "problem"),
    [
        (replace(machine(), glibc="2.17"), "needs glibc 2.28 or newer"),
        (replace(APPLE, macos_version="13.6.1"), "needs macOS 14.0 or newer"),
        (replace(machine(), glibc="2.28"), None),
        (replace(APPLE, macos_version="14.0"), None),
        (replace(machine(), glibc=None), None),  # musl or unknown: uv has the last word
    ],
    ids=["glibc-2.17", "macos-13", "glibc-2.28", "macos-14", "libc-unknown"],
)
def test_an_os_too_old_for_the_pinned_wheels_is_refused_in_one_sentence(m, problem):
    plan = plan_for(m)
    if problem is None:
        assert plan.ok
        return
    (found,) = plan.problems
    assert problem in found and found.count(". ") == 0 and found.endswith(".")
    assert "Not ready: 1 problem(s)." in plan.format_text()


# ---------------------------------------------------------------------------
# What the source check found (the check itself: test_source_check.py)


def answer(role: str, url: str, ok: bool, kind: str = "dns") -> SourceAnswer:
    host = url.split("/")[2]
    if ok:
        return SourceAnswer(role, url, host, True, 200, seconds=0.1)
    reason = {"dns": "the name could not be resolved (no DNS answer)",
              "timeout": "timed out while connecting"}[kind]  # fmt: skip
    return SourceAnswer(role, url, host, False, failure=reason, kind=kind, seconds=0.1)


def answers_for(m: Machine, build: str | None = None, **ok: bool) -> tuple[SourceAnswer, ...]:
    targets = source_targets(m, SPEC, settings(), build=build)
    return tuple(answer(role, url, ok.get(role.replace("-", "_"), True)) for role, url in targets)


def test_every_source_that_answers_leaves_the_plan_ready_and_listed():
    m = machine()
    plan = plan_for(m, answers=answers_for(m))
    assert plan.ok and not plan.warnings
    text = plan.format_text()
    assert "package index: pypi.org answered" in text
    assert "weights (Hub): huggingface.co answered" in text


def test_an_unreachable_cpu_index_gives_way_to_the_package_index_and_says_so():
    m = machine()
    plan = plan_for(m, build="cpu", answers=answers_for(m, "cpu", torch=False))
    assert plan.ok
    assert plan.torch_index_url == "https://pypi.org/simple"
    assert plan.torch_build.name == "cu130" and not plan.gpu_ready
    (warning,) = plan.warnings
    assert "PyTorch's cpu index (download.pytorch.org) did not answer" in warning
    assert "larger" in warning
    # The disk figures are those of the wheel actually installed.
    env = next(n for n in plan.disk_needs if n.purpose == "environment")
    assert env.needed_bytes == SPEC.disk.env_bytes_cuda


def test_a_gpu_plan_never_falls_back_to_a_wheel_without_cuda():
    m = win("580.88")
    plan = plan_for(m, answers=answers_for(m, torch=False))
    assert not plan.ok and plan.torch_index_url == "https://download.pytorch.org/whl/cu130"
    (problem,) = plan.problems
    assert "The name download.pytorch.org could not be found" in problem  # the one host
    assert "while pypi.org, huggingface.co answered" in problem  # and which did answer
    assert "looks offline" not in problem
    (failure,) = plan.source_failures
    assert failure.kind == "dns" and "allow download.pytorch.org" in failure.hint


def test_a_dead_package_index_is_a_problem_but_a_slow_one_a_warning():
    m = machine()
    targets = source_targets(m, SPEC, settings())
    dead = tuple(answer(r, u, r != "packages") for r, u in targets)
    plan = plan_for(m, answers=dead)
    assert not plan.ok and "The name pypi.org could not be found" in plan.problems[0]
    slow = tuple(answer(r, u, r != "packages", kind="timeout") for r, u in targets)
    plan = plan_for(m, answers=slow)
    assert plan.ok and any("will try it anyway" in w for w in plan.warnings)


def test_an_unreachable_hub_is_a_warning_about_weights_not_a_refusal():
    m = machine()
    plan = plan_for(m, answers=answers_for(m, weights=False))
    assert plan.ok
    (warning,) = plan.warnings
    assert "The Hub (huggingface.co) did not answer" in warning
    assert "environment can be built" in warning and "weights" in warning


def _spec_copy(folder: Path, edit_spec, edit_constraints) -> Path:
    folder.mkdir()
    spec = folder / SPEC.path.name
    spec.write_text(edit_spec(SPEC.path.read_text("utf-8")), "utf-8")
    assert SPEC.constraints_path is not None
    constraints = folder / SPEC.constraints_path.name
    constraints.write_text(edit_constraints(SPEC.constraints_path.read_text("utf-8")), "utf-8")
    return spec


def test_a_comment_or_layout_edit_to_the_spec_keeps_installed_environments_current(
    tmp_path: Path,
) -> None:
    """A release that only rewords the spec's comments must not make every user's 7 GB
    environment out of date (the fingerprint goes into the plan's hash); a changed pin
    must."""
    reworded = _spec_copy(
        tmp_path / "reworded",
        lambda text: "# a new comment\n" + text.replace(" = ", "   =   ") + "\n\n# the end\n",
        lambda text: "# reworded header\n\n" + text.replace("\n", "  # pinned\n", 3),
    )
    assert load_spec(reworded).fingerprint == SPEC.fingerprint
    repinned = _spec_copy(
        tmp_path / "repinned",
        lambda text: text,
        lambda text: text.replace("affine==3.0.1", "affine==3.0.2"),
    )
    assert load_spec(repinned).fingerprint != SPEC.fingerprint
