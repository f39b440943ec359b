"""Which SAM 3 implementation runs here, and so which segment modes can work.

samgeo-api 1.4.2 has two SAM 3 implementations: ``meta`` (SAM 3's own code; it
puts tensors on ``"cuda"`` unconditionally, so it needs CUDA) and
``transformers`` (runs on the CPU too). Only ``/segment/text`` lets a request
choose, with its ``backend`` field, whose default is ``meta``;
``/segment/automatic`` and ``/segment/predict`` with SAM 3 always build ``meta``,
and ``facebook/sam3.1`` is meta only.

The sidecar knows the truth only for the environment it installed: the record
written after verification says which implementation the plan chose
(``sam3_backend``) and whether CUDA worked there (``cuda_working``). For that
environment it fills in a missing ``backend`` with the plan's choice and refuses
what would only fail deep inside torch (as soon as the deciding field has arrived,
before the backend has a complete request). A server it did not build
(``GEOLIBRE_ML_SAMGEO_CMD``, ``GEOLIBRE_ML_SAMGEO_URL``, a ``samgeo-api`` on
PATH) may run anywhere with any torch (a remote GPU, ROCm): requests to it go
through unchanged and status says "unknown".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from geolibre_env.model_env import ActiveEnvironment, active_environment
from geolibre_env.spec import SAM3_IMPLEMENTATIONS, Sam3Implementation

from geolibre_sidecar.errors import NotSupportedHere
from geolibre_sidecar.settings import SidecarSettings

# With SAM 3 (model_version sam3, the default), samgeo-api builds meta for these whatever is
# asked; SAM 1 (model_version sam) has its own code, which runs on the CPU.
META_ONLY_MODES = ("automatic", "predict")
META_ONLY_MODELS = ("facebook/sam3.1",)  # a checkpoint repository: meta only


@dataclass(frozen=True)
class Sam3Here:
    """What this sidecar knows about SAM 3 on its backend."""

    known: bool  # False: a backend we did not install; we do not interfere
    default: Sam3Implementation | None = None  # added to /segment/text when absent
    meta_runs: bool | None = None
    why_not_meta: str = ""

    def refusal(
        self, mode: str, fields: Mapping[str, str], *, complete: bool = True
    ) -> NotSupportedHere | None:
        """The answer for a request that could only fail here for want of CUDA, or None.

        ``complete`` False: ``fields`` are the parts seen so far, so a missing field
        does not yet mean its default.
        """
        if self.meta_runs is not False:
            return None
        why = self.why_not_meta
        if mode in META_ONLY_MODES:
            version = fields.get("model_version")
            if version is None and not complete:
                return None
            if (version or "").strip() in ("", "sam3"):  # empty means the default, sam3
                return NotSupportedHere(
                    f"/segment/{mode} with SAM 3 cannot run on this computer: samgeo-api runs "
                    f"it only with SAM 3's meta implementation, which needs CUDA ({why}); use "
                    "text segmentation, which runs here with the transformers implementation."
                )
            return None
        if (fields.get("backend") or "").strip() == "meta":
            return NotSupportedHere(
                f"backend=meta cannot run on this computer: SAM 3's meta implementation needs "
                f"CUDA ({why}); send backend=transformers, or leave the field out to use the "
                "one installed for this computer."
            )
        if (fields.get("model_id") or "").strip() in META_ONLY_MODELS:
            return NotSupportedHere(
                f"model_id={fields['model_id'].strip()} cannot run on this computer: it has "
                f"only SAM 3's meta implementation, which needs CUDA ({why}); leave model_id "
                "out to use facebook/sam3."
            )
        return None

    def vetter(self, mode: str) -> Callable[[str, str], None]:
        """For the multipart guard: refuse a decisive field as soon as its part ends."""

        def vet(name: str, value: str) -> None:
            if refusal := self.refusal(mode, {name: value}, complete=False):
                raise refusal

        return vet

    def modes(self) -> dict[str, dict[str, Any]]:
        """``/ml/status`` ``modes``: per endpoint, whether it can work here and with what."""
        if not self.known:
            note = (
                "Unknown: the sidecar did not install this backend, so it cannot tell whether "
                "CUDA works there; requests go through unchanged (samgeo-api's default is meta)."
            )
            return {
                mode: {"works": None, "implementation": None, "detail": note}
                for mode in ("text", "automatic", "predict")
            }
        modes = {
            "text": {
                "works": True,
                "implementation": self.default,
                "detail": f"Runs with SAM 3's {self.default} implementation unless the request "
                "names another in its backend field.",
            }
        }
        for mode in META_ONLY_MODES:
            refusal = self.refusal(mode, {})
            modes[mode] = {
                "works": refusal is None,
                "implementation": "meta",
                "detail": refusal.detail if refusal else "Runs with SAM 3's meta implementation.",
            }
        return modes


def from_record(record: dict[str, Any]) -> Sam3Here:
    """What an installed environment's record says (see geolibre_env.install.provision)."""
    meta_runs = bool(record.get("cuda_working"))
    chosen = record.get("sam3_backend")
    default: Sam3Implementation = chosen if chosen in SAM3_IMPLEMENTATIONS else "meta"
    if not meta_runs:
        # The plan may have chosen meta for a GPU that verification then found unusable:
        # transformers is the one that can answer.
        default = "transformers"
    build = record.get("build") or "this"
    why = "" if meta_runs else f"CUDA did not work in the {build} environment installed here"
    return Sam3Here(known=True, default=default, meta_runs=meta_runs, why_not_meta=why)


UNKNOWN = Sam3Here(known=False)


class Sam3Policy:
    """:class:`Sam3Here` for the backend the sidecar would launch now.

    Re-read only when the active environment changes (an install from the app or
    from a terminal switches it), so the segment path costs one ``stat``.
    """

    def __init__(self, settings: SidecarSettings) -> None:
        self.settings = settings
        self._key: object = object()
        self._here = UNKNOWN

    def current(self) -> Sam3Here:
        settings = self.settings
        if settings.samgeo_url or settings.samgeo_cmd:
            return UNKNOWN
        pointer = settings.env.paths.active_pointer
        key: object = None
        with contextlib.suppress(OSError):
            stat = pointer.stat()
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if key != self._key:
            active = active_environment(settings.env.paths)
            self._here = _for(active)
            self._key = key
        return self._here


def _for(active: ActiveEnvironment | None) -> Sam3Here:
    # No environment: the launch falls back to a samgeo-api on PATH, which we did not build.
    return UNKNOWN if active is None else from_record(active.record)
