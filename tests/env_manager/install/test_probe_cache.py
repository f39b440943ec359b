"""The doctor's look at the model environment on a real install (real uv, the
stand-in wheelhouse): live when it can, else the last good answer for that very
environment with its age, never one kept for another set of packages."""

from __future__ import annotations

import os

from geolibre_env.install.probe_cache import age, probe_active
from geolibre_env.model_env import active_environment
from geolibre_env.paths import Paths

TOO_SHORT_S = 0.001  # no Python starts this fast: the live check cannot finish


def test_the_live_check_is_kept_and_shown_with_its_age_when_the_next_one_cannot_finish(
    installer,
):
    installer.install_json("--no-weights")
    active = active_environment(Paths.resolve(installer.home))
    assert active is not None

    live = probe_active(active)
    assert live.live and live.note == "checked now"
    assert live.report.data["torch"] == "2.14.1+standin"

    late = probe_active(active, timeout_s=TOO_SHORT_S)
    assert not late.live and late.report.data["torch"] == "2.14.1+standin"
    assert late.note.startswith("checked ") and " ago; no live answer within 0.001 s" in late.note

    # A package added or removed: the kept answer no longer describes this environment.
    assert active.site_packages is not None
    (active.site_packages / "added_later.py").write_text("", encoding="utf-8")
    stat = active.site_packages.stat()
    os.utime(active.site_packages, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    stale = probe_active(active, timeout_s=TOO_SHORT_S)
    assert stale.note.startswith("recorded at install time, ")
    assert stale.report.data == active.verify


def test_ages_read_as_people_say_them():
    assert [age(s) for s in (3, 240, 3 * 3600, 3 * 86400)] == ["3 s", "4 min", "3 h", "3 days"]
