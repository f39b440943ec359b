"""Runs INSIDE the model environment (its own Python, not ours): imports torch and
samgeo and reports what works as one JSON object on stdout.

Stand-alone on purpose: only the standard library besides what it probes, so
it works in an environment that has none of our packages. ``--quick`` skips
samgeo's heavy imports (the doctor's fast path).
"""

import importlib
import importlib.util
import json
import platform
import sys
import time


def covers(arch, major, minor):
    """sm_XY runs on X.Z for Z >= Y: cubins are forward compatible within a major."""
    if not arch.startswith("sm_"):
        return False
    digits, prefix = arch[3:], str(major)
    rest = digits[len(prefix) :] if digits.startswith(prefix) else ""
    return rest.isdigit() and int(rest) <= minor


def probe(imports, quick):
    report = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "imports": {},
        "errors": [],
    }
    started = time.monotonic()
    try:
        import torch
    except Exception as exc:  # report, do not crash: the caller needs the reason
        report["errors"].append(f"import torch: {type(exc).__name__}: {exc}")
        torch = None
    if torch is not None:
        report["torch"] = str(getattr(torch, "__version__", "unknown"))
        version = getattr(torch, "version", None)
        report["cuda_version"] = getattr(version, "cuda", None)
        cuda = getattr(torch, "cuda", None)
        available = False
        try:
            available = bool(cuda and cuda.is_available())
        except Exception as exc:
            report["errors"].append(f"torch.cuda.is_available: {exc}")
        report["cuda_available"] = available
        try:
            report["arch_list"] = list(cuda.get_arch_list()) if cuda else []
        except Exception:
            report["arch_list"] = []
        devices = []
        if available:
            for index in range(cuda.device_count()):
                major, minor = cuda.get_device_capability(index)
                devices.append(
                    {
                        "index": index,
                        "name": cuda.get_device_name(index),
                        "capability": f"{major}.{minor}",
                        "arch_covered": any(
                            covers(arch, major, minor) for arch in report["arch_list"]
                        ),
                    }
                )
            try:
                value = float((torch.ones(8, device="cuda") * 2).sum().item())
                report["gpu_op"] = "ok" if value == 16.0 else f"wrong result {value}"
            except Exception as exc:
                report["gpu_op"] = f"failed: {type(exc).__name__}: {exc}"
        report["devices"] = devices
    for name in [] if quick else imports:
        try:
            module = importlib.import_module(name)
            report["imports"][name] = str(getattr(module, "__version__", "ok"))
        except Exception as exc:
            report["imports"][name] = None
            report["errors"].append(f"import {name}: {type(exc).__name__}: {exc}")
    try:  # the installed version, without samgeo's heavy import
        from importlib.metadata import version

        report["samgeo_version"] = version("segment-geospatial")
    except Exception:
        report["samgeo_version"] = None
    spec = importlib.util.find_spec("samgeo")
    if spec is not None and spec.submodule_search_locations:
        report["samgeo_dir"] = next(iter(spec.submodule_search_locations))
    report["seconds"] = round(time.monotonic() - started, 2)
    return report


if __name__ == "__main__":
    args = sys.argv[1:]
    quick = "--quick" in args
    names = [a for a in args if not a.startswith("--")]
    print(json.dumps(probe(names, quick)))
