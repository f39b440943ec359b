"""Asking a model environment what works: torch, CUDA, the GPU's architecture,
a tiny GPU operation, and samgeo's imports, by running
:mod:`geolibre_env.install.model_probe` with that environment's own Python.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geolibre_env.errors import ToolError
from geolibre_env.install import model_probe
from geolibre_env.redact import redact

VERIFY_TIMEOUT_S = 600.0  # samgeo.api's imports take ~20 s on a slow disk; leave room
QUICK_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class VerifyReport:
    """What the probe saw; ``ok`` means every import worked (CUDA may still be absent)."""

    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.data.get("errors") and "torch" in self.data

    @property
    def cuda_working(self) -> bool:
        devices = self.data.get("devices") or []
        return bool(
            self.data.get("cuda_available")
            and devices
            and self.data.get("gpu_op") == "ok"
            and all(d.get("arch_covered") for d in devices)
        )

    @property
    def problems(self) -> list[str]:
        problems = list(self.data.get("errors") or [])
        for device in self.data.get("devices") or []:
            if not device.get("arch_covered"):
                problems.append(
                    f"torch {self.data.get('torch')} has no kernels for {device.get('name')} "
                    f"(compute capability {device.get('capability')}); its architectures are "
                    f"{', '.join(self.data.get('arch_list') or []) or 'none'}."
                )
        gpu_op = self.data.get("gpu_op")
        if gpu_op and gpu_op != "ok":
            problems.append(f"A test operation on the GPU {gpu_op}.")
        return problems

    def summary(self) -> str:
        d = self.data
        if "torch" not in d:
            return "torch does not import."
        cuda = (
            f"CUDA {d.get('cuda_version')} working on "
            + ", ".join(x.get("name", "?") for x in d.get("devices") or [])
            if self.cuda_working
            else (
                "a CPU build of torch"
                if not d.get("cuda_version")
                # A CUDA build with no GPU to use (PyPI's Linux torch): it runs on the CPU.
                else f"CUDA {d.get('cuda_version')} build, no usable GPU here: runs on the CPU"
                if not d.get("devices")
                else "CUDA not usable"
            )
        )
        return f"Python {d.get('python')}, torch {d.get('torch')}, {cuda}."


def run_probe(
    python: Path,
    imports: tuple[str, ...] = (),
    *,
    quick: bool = False,
    timeout_s: float | None = None,
) -> VerifyReport:
    """Run the probe with ``python``; a crash or timeout becomes a :class:`ToolError`."""
    script = Path(model_probe.__file__)
    argv = [str(python), "-I", str(script), *imports, *(["--quick"] if quick else [])]
    timeout = timeout_s or (QUICK_TIMEOUT_S if quick else VERIFY_TIMEOUT_S)
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ToolError(
            f"The model environment did not answer within {timeout:g} s.", command=argv
        ) from None
    except OSError as exc:
        raise ToolError(f"The model environment's Python cannot run: {exc}", command=argv) from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise ToolError(
            f"The model environment's Python failed (exit code {proc.returncode}).",
            command=argv,
            returncode=proc.returncode,
            output_tail=redact("\n".join(proc.stderr.splitlines()[-20:])),
        )
    return VerifyReport(json.loads(lines[-1]))
