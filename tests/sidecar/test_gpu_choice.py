"""Which GPUs get a managed samgeo-api each (GEOLIBRE_ML_GPU_BACKENDS); the processes
themselves are tested in tests/realstack/test_gpu_backends.py."""

from __future__ import annotations

import pytest
from geolibre_env.errors import ConfigError
from geolibre_env.machine import Gpu
from geolibre_sidecar.gpu_backends import choose_gpus, device_of
from geolibre_sidecar.settings import SidecarSettings


def gpus(count: int) -> list[Gpu]:
    # nvidia-smi's order is not assumed: the list is given backwards.
    return [Gpu(i, "NVIDIA L4", "570.86", "8.9", uuid=f"GPU-{i}") for i in reversed(range(count))]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"GEOLIBRE_ML_GPU_BACKENDS": "All"}, None),
        ({"GEOLIBRE_ML_GPU_BACKENDS": "3"}, 3),
        ({"GEOLIBRE_ML_GPU_BACKENDS": "0"}, 0),
        ({"CUDA_VISIBLE_DEVICES": "1"}, 0),  # the user already chose a GPU
        ({"CUDA_VISIBLE_DEVICES": "1", "GEOLIBRE_ML_GPU_BACKENDS": "all"}, None),
    ],
)
def test_the_setting_is_read_once_with_the_users_cuda_visible_devices_kept(
    environ: dict[str, str], expected: int | None
) -> None:
    assert SidecarSettings.from_environ(environ).gpu_backends == expected


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_a_bad_value_stops_start_up_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match="GEOLIBRE_ML_GPU_BACKENDS"):
        SidecarSettings.from_environ({"GEOLIBRE_ML_GPU_BACKENDS": value})


@pytest.mark.parametrize(
    ("count", "cuda_working", "limit", "chosen"),
    [
        (4, True, None, [0, 1, 2, 3]),
        (4, True, 3, [0, 1, 2]),
        (4, True, 1, []),  # one backend: not pinned, as without the feature
        (4, True, 0, []),
        (1, True, None, []),
        (4, False, None, []),  # the model environment's torch cannot use them
    ],
)
def test_two_gpus_or_more_with_working_cuda_get_one_backend_each(
    count: int, cuda_working: bool, limit: int | None, chosen: list[int]
) -> None:
    picked = choose_gpus(gpus(count), cuda_working=cuda_working, limit=limit)
    assert [gpu.index for gpu in picked] == chosen


def test_a_backend_is_pinned_by_uuid_or_else_by_nvidia_smis_index() -> None:
    assert device_of(Gpu(1, "NVIDIA L4", None, None, uuid="GPU-abc")) == "GPU-abc"
    assert device_of(Gpu(1, "NVIDIA L4", None, None)) == "1"
