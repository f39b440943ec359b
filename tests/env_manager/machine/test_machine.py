"""Machine detection: nvidia-smi and kernel outputs (recorded), and real probes.

The recorded outputs live in tests/env_manager/fixtures/machines/ (see its README.txt). The
integration tests point GEOLIBRE_ML_NVIDIA_SMI at a real script that prints
a recording, fails, or hangs, and run the real detect_machine().
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from geolibre_env.install.plan import make_plan
from geolibre_env.machine.detect import (
    DiskSpace,
    Machine,
    PythonInstall,
    dedupe_pythons,
    detect_machine,
    nearest_existing,
    nvidia_smi_candidates,
)
from geolibre_env.machine.nvidia import (
    LEGACY_NVIDIA_SMI_FIELDS,
    MISSING_TEXT,
    NVIDIA_SMI_FIELDS,
    TIMEOUT_TEXT,
    Gpu,
    arch_covers,
    capability_from_name,
    classify_nvidia_smi_failure,
    nvidia_smi_fix,
    parse_kernel_driver_version,
    parse_nvidia_smi_csv,
    version_key,
)
from geolibre_env.paths import Paths
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import load_spec
from geolibre_env.uv.runner import UvTool, find_uv

FIXTURES = Path(__file__).parents[1] / "fixtures" / "machines"


def recorded(name: str) -> str:
    # newline="" keeps Windows' \r\n as recorded.
    with open(FIXTURES / name, encoding="utf-8", newline="") as handle:
        return handle.read()


# ---------------------------------------------------------------------------
# Parsing recorded outputs


def test_multi_gpu_server_lists_both_gpus_with_every_field():
    gpus = parse_nvidia_smi_csv(recorded("nvidia-smi-2xa100-550.csv"))
    assert [g.index for g in gpus] == [0, 1]
    first = gpus[0]
    assert first.name == "NVIDIA A100-SXM4-80GB"
    assert first.driver_version == "550.127.05"
    assert (first.compute_capability, first.capability_source) == ("8.0", "nvidia-smi")
    assert (first.memory_total_mib, first.memory_free_mib) == (81920, 81037)
    assert first.uuid == "GPU-3f8a1c2e-5b7d-4e19-9a6c-0d2e7f4b8c51"
    assert gpus[1].memory_free_mib == 80511


def test_laptop_fields_nvidia_smi_cannot_report_become_unknown():
    (gpu,) = parse_nvidia_smi_csv(recorded("nvidia-smi-laptop-na.csv"))
    assert gpu.memory_total_mib is None  # "[Not Supported]"
    assert gpu.memory_free_mib is None  # "[N/A]"
    assert gpu.compute_capability == "8.6"
    assert "capability 8.6" in gpu.describe()


def test_windows_crlf_output_leaves_no_carriage_return_in_values():
    text = recorded("nvidia-smi-windows-4070.csv")
    assert "\r\n" in text, "the fixture must keep its CRLF line endings"
    (gpu,) = parse_nvidia_smi_csv(text)
    assert gpu.uuid == "GPU-b6e1f0a7-3d92-4c58-a0e4-9f7b2c81d3e6"
    assert (gpu.driver_version, gpu.compute_capability) == ("566.14", "8.9")


@pytest.mark.parametrize(
    ("fixture", "names", "capability"),
    [
        ("nvidia-smi-470-k80-legacy.csv", ["Tesla K80", "Tesla K80"], "3.7"),
        ("nvidia-smi-470-gtx1080-legacy.csv", ["NVIDIA GeForce GTX 1080"], "6.1"),
    ],
)
def test_old_nvidia_smi_without_compute_cap_gets_capability_from_the_name(
    fixture, names, capability
):
    gpus = parse_nvidia_smi_csv(recorded(fixture), LEGACY_NVIDIA_SMI_FIELDS)
    assert [g.name for g in gpus] == names
    assert {(g.compute_capability, g.capability_source) for g in gpus} == {(capability, "name")}
    assert {g.driver_version for g in gpus} == {"470.256.02"}


def test_the_old_field_error_is_not_mistaken_for_a_gpu_row():
    assert parse_nvidia_smi_csv(recorded("nvidia-smi-no-compute-cap.txt")) == []


@pytest.mark.parametrize(
    ("fixture", "kind", "fix_words"),
    [
        ("nvidia-smi-no-driver.txt", "no_driver", "reinstall the NVIDIA driver"),
        ("nvidia-smi-version-mismatch.txt", "version_mismatch", "restart the computer"),
        ("nvidia-smi-no-devices.txt", "no_devices", "seated and enabled"),
        ("nvidia-smi-gpu-lost.csv", "gpu_lost", "stopped responding"),
    ],
)
def test_no_driver_shapes_are_told_apart_and_each_has_a_fix(fixture, kind, fix_words):
    text = recorded(fixture)
    assert classify_nvidia_smi_failure(text) == kind
    assert fix_words in nvidia_smi_fix(text)


def test_a_lost_gpu_does_not_hide_the_working_one():
    (gpu,) = parse_nvidia_smi_csv(recorded("nvidia-smi-gpu-lost.csv"))
    assert gpu.name == "NVIDIA GeForce RTX 3090"


@pytest.mark.parametrize(
    ("fixture", "version"),
    [
        ("proc-driver-nvidia-version-550-open.txt", "550.144.03"),
        ("proc-driver-nvidia-version-470.txt", "470.256.02"),
        ("proc-driver-nvidia-version-580-aarch64.txt", "580.95.05"),
    ],
)
def test_kernel_driver_version_from_proc(fixture, version):
    assert parse_kernel_driver_version(recorded(fixture)) == version


def test_kernel_file_without_a_version_gives_none():
    assert parse_kernel_driver_version("GCC version:  gcc version 12.3.0\n") is None


@pytest.mark.parametrize(
    ("name", "capability"),
    [
        ("NVIDIA GeForce RTX 5090", "12.0"),
        ("NVIDIA GeForce RTX 4090", "8.9"),
        ("NVIDIA RTX 6000 Ada Generation", "8.9"),
        ("NVIDIA RTX A6000", "8.6"),
        ("Tesla T4", "7.5"),
        ("NVIDIA GeForce GTX 1650", "7.5"),
        ("Tesla V100-SXM2-32GB", "7.0"),
        ("Tesla P100-PCIE-16GB", "6.0"),
        ("TITAN X (Pascal)", "6.1"),
        ("GeForce GTX TITAN X", "5.2"),
        ("GeForce GTX 750 Ti", "5.0"),
        ("GeForce GTX 780", "3.5"),
        ("Some Future Accelerator", None),
    ],
)
def test_name_table_knows_common_gpus_and_admits_the_rest(name, capability):
    assert capability_from_name(name) == capability


@pytest.mark.parametrize(
    ("arch", "capability", "runs"),
    [
        ("sm_86", "8.9", True),  # Ada runs Ampere kernels
        ("sm_86", "8.0", False),  # never downwards
        ("sm_80", "9.0", False),  # never across majors
        ("sm_60", "6.1", True),
        ("sm_120", "12.1", True),
        ("sm_100", "12.0", False),
        ("sm_90a", "9.0", False),  # arch-specific targets are not counted
    ],
)
def test_binary_compatibility_within_a_major_version(arch, capability, runs):
    assert arch_covers(arch, capability) is runs


def test_driver_versions_compare_numerically():
    assert version_key("525.60.13") > version_key("525.60.12")
    assert version_key("580.88") > version_key("580.65.06")
    assert version_key("580") == version_key("580.0.0")
    with pytest.raises(ValueError):
        version_key("[N/A]")


# ---------------------------------------------------------------------------
# From recorded outputs to the torch build

SPEC = load_spec()
SETTINGS = EnvSettings(paths=Paths.resolve(Path("/home/ana/geolibre")))


def recorded_machine(fixture: str, *, os: str = "linux", legacy: bool = False) -> Machine:
    text = (FIXTURES / fixture).read_text(encoding="utf-8")
    gpus = tuple(
        parse_nvidia_smi_csv(text, LEGACY_NVIDIA_SMI_FIELDS if legacy else NVIDIA_SMI_FIELDS)
    )
    base = Machine.from_dict(json.loads(recorded("macbook-air-m2.json")))
    return Machine.from_dict(
        {**base.to_dict(), "os": os, "arch": "x86_64", "apple_silicon": False,
         "gpus": [g.to_dict() for g in gpus], "driver_version": gpus[0].driver_version,
         "driver_source": "nvidia-smi"}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fixture", "os", "legacy", "build", "words"),
    [
        ("nvidia-smi-2xa100-550.csv", "linux", False, "cu126", "cu130 needs driver 580.65.06"),
        ("nvidia-smi-rtx5090-575.csv", "linux", False, "cu128", "cu126 has no kernels for"),
        ("nvidia-smi-windows-4070.csv", "windows", False, "cu126", "on Windows"),
        ("nvidia-smi-laptop-na.csv", "linux", False, "cu126", "GeForce RTX 3050 Laptop GPU (8.6)"),
        # No CUDA build fits: the package index's cu130 wheel, running on the CPU.
        ("nvidia-smi-470-k80-legacy.csv", "linux", True, "cu130", "too old for current PyTorch"),
        ("nvidia-smi-470-gtx1080-legacy.csv", "linux", True, "cu130", "needs 525.60.13 or newer"),
    ],
)
def test_recorded_machines_get_the_expected_build(fixture, os, legacy, build, words):
    plan = make_plan(recorded_machine(fixture, os=os, legacy=legacy), SPEC, SETTINGS)
    assert plan.torch_build.name == build
    assert words in plan.reason("torch")


def test_a_capability_that_does_not_parse_counts_as_unknown():
    odd = recorded_machine("nvidia-smi-2xa100-550.csv")
    odd = Machine.from_dict({**odd.to_dict(), "gpus": [Gpu(0, "Odd", "580.65.06", "8").to_dict()]})
    plan = make_plan(odd, SPEC, SETTINGS)
    assert not plan.gpu_ready and "could not be read" in plan.reason("torch")


# ---------------------------------------------------------------------------
# Recording and replaying machines


def test_machine_round_trips_through_json():
    gpus = tuple(parse_nvidia_smi_csv(recorded("nvidia-smi-2xa100-550.csv")))
    machine = Machine(
        os="linux",
        arch="x86_64",
        cpu_count=64,
        memory_total_bytes=512 * 2**30,
        gpus=gpus,
        driver_version="550.127.05",
        driver_source="nvidia-smi",
        nvidia_smi_error=None,
        apple_silicon=False,
        pythons=(PythonInstall("3.11.9", "/usr/bin/python3.11"),),
        disks=(DiskSpace("environment", "/data/model-env", 10**12, 2 * 10**12, 2049),),
    )
    replayed = Machine.from_dict(json.loads(json.dumps(machine.to_dict())))
    assert replayed == machine


def test_recorded_mac_loads_and_describes_itself():
    machine = Machine.from_dict(json.loads(recorded("macbook-air-m2.json")))
    assert machine.apple_silicon and not machine.gpus
    assert machine.disk("weights").device == machine.disk("cache").device
    assert machine.describe().startswith("macOS arm64 (Apple silicon)")


def test_pythons_are_deduplicated_by_the_interpreter_they_resolve_to(tmp_path):
    real = tmp_path / "python3.11"
    real.write_text("")
    (tmp_path / "python3").symlink_to(real)
    other = tmp_path / "python3.12"
    other.write_text("")
    found = [
        ("3.11.9", str(tmp_path / "python3")),
        ("3.11.9", str(real)),
        ("3.12.4", str(other)),
    ]
    assert dedupe_pythons(found) == (
        PythonInstall("3.11.9", str(tmp_path / "python3")),
        PythonInstall("3.12.4", str(other)),
    )


def test_disk_is_measured_on_the_nearest_existing_folder(tmp_path):
    assert nearest_existing(tmp_path / "not" / "yet" / "there") == tmp_path


def test_windows_also_looks_where_nvidia_installs_nvidia_smi():
    settings = EnvSettings.from_environ({"SYSTEMROOT": r"D:\Windows"})
    candidates = nvidia_smi_candidates(settings, "windows")
    assert candidates[0] == "nvidia-smi"
    assert any("System32" in c and c.startswith("D:") for c in candidates)
    assert any("NVSMI" in c for c in candidates)
    assert nvidia_smi_candidates(settings, "linux") == ["nvidia-smi"]


# ---------------------------------------------------------------------------
# detect_machine() with a real stand-in nvidia-smi


@pytest.fixture(scope="module")
def uv() -> UvTool:
    return find_uv(EnvSettings.from_environ())


def fake_nvidia_smi(tmp_path: Path, body: str) -> Path:
    """An executable script that behaves as ``body`` says (args in ``query``)."""
    script = tmp_path / "fake-nvidia-smi"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        "query = ' '.join(sys.argv[1:])\n"
        f"FIXTURES = {str(FIXTURES)!r}\n"
        "def show(name):\n"
        "    sys.stdout.write(open(FIXTURES + '/' + name, newline='').read())\n"
        f"{body}\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def settings_for(tmp_path: Path, nvidia_smi: Path) -> EnvSettings:
    environ = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "SYSTEMROOT")}
    environ["GEOLIBRE_ML_HOME"] = str(tmp_path / "home")
    environ["GEOLIBRE_ML_NVIDIA_SMI"] = str(nvidia_smi)
    return EnvSettings.from_environ(environ)


def test_detects_gpus_from_a_working_nvidia_smi(tmp_path, uv):
    smi = fake_nvidia_smi(tmp_path, "show('nvidia-smi-2xa100-550.csv')")
    settings = settings_for(tmp_path, smi)
    machine = detect_machine(settings, uv=uv, proc_driver_version=tmp_path / "absent")

    assert machine.nvidia_smi_error is None
    assert machine.gpus == tuple(parse_nvidia_smi_csv(recorded("nvidia-smi-2xa100-550.csv")))
    assert (machine.driver_version, machine.driver_source) == ("550.127.05", "nvidia-smi")
    assert machine.memory_total_bytes and machine.memory_total_bytes > 0
    # GEOLIBRE_ML_HOME does not exist yet: measured on tmp_path, one filesystem.
    assert {d.purpose for d in machine.disks} == {"environment", "cache", "weights"}
    assert len({d.device for d in machine.disks}) == 1
    assert all(d.free_bytes > 0 for d in machine.disks)
    # uv found Pythons, one entry per real interpreter.
    assert machine.python_error is None and machine.pythons
    resolved = [os.path.realpath(p.path) for p in machine.pythons]
    assert len(resolved) == len(set(resolved))
    assert Machine.from_dict(json.loads(json.dumps(machine.to_dict()))) == machine


def test_a_failing_nvidia_smi_is_recorded_and_the_kernel_gives_the_driver(tmp_path, uv):
    smi = fake_nvidia_smi(tmp_path, "show('nvidia-smi-no-driver.txt'); sys.exit(9)")
    proc = FIXTURES / "proc-driver-nvidia-version-550-open.txt"
    machine = detect_machine(settings_for(tmp_path, smi), uv=uv, proc_driver_version=proc)

    assert machine.gpus == ()
    assert "exited with code 9" in machine.nvidia_smi_error
    assert "couldn't communicate with the NVIDIA driver" in machine.nvidia_smi_error
    assert (machine.driver_version, machine.driver_source) == ("550.144.03", "kernel")


def test_old_nvidia_smi_is_asked_again_without_compute_cap(tmp_path, uv):
    smi = fake_nvidia_smi(
        tmp_path,
        "if 'compute_cap' in query:\n"
        "    show('nvidia-smi-no-compute-cap.txt'); sys.exit(2)\n"
        "show('nvidia-smi-470-k80-legacy.csv')",
    )
    machine = detect_machine(settings_for(tmp_path, smi), uv=uv, proc_driver_version=tmp_path)

    assert machine.nvidia_smi_error is None
    assert [g.compute_capability for g in machine.gpus] == ["3.7", "3.7"]
    assert machine.driver_version == "470.256.02"


def test_a_gpu_that_fell_off_the_bus_keeps_the_other_and_the_error(tmp_path, uv):
    smi = fake_nvidia_smi(tmp_path, "show('nvidia-smi-gpu-lost.csv'); sys.exit(15)")
    machine = detect_machine(settings_for(tmp_path, smi), uv=uv, proc_driver_version=tmp_path)

    assert [g.name for g in machine.gpus] == ["NVIDIA GeForce RTX 3090"]
    assert "GPU is lost" in machine.nvidia_smi_error


def test_missing_nvidia_smi_is_not_an_error_to_raise(tmp_path, uv):
    settings = settings_for(tmp_path, tmp_path / "no-such-nvidia-smi")
    machine = detect_machine(settings, uv=uv, proc_driver_version=tmp_path / "absent")

    assert machine.gpus == () and machine.driver_version is None
    assert machine.nvidia_smi_error.startswith(MISSING_TEXT)


def test_a_hanging_nvidia_smi_is_cut_off_at_the_timeout(tmp_path, uv):
    smi = fake_nvidia_smi(tmp_path, "time.sleep(60)")
    started = time.monotonic()
    machine = detect_machine(
        settings_for(tmp_path, smi), uv=uv, timeout_s=1.0, proc_driver_version=tmp_path
    )
    assert machine.nvidia_smi_error.startswith(TIMEOUT_TEXT)
    assert classify_nvidia_smi_failure(machine.nvidia_smi_error) == "timeout"
    assert time.monotonic() - started < 30  # not the 60 s the script wanted


def test_gpu_describe_says_when_capability_is_unknown():
    gpu = Gpu(0, "Mystery GPU", "450.80.02", None)
    assert "capability unknown" in gpu.describe()
