"""``python -m tests.benchmarks [--quick] [--only proxy,supervisor,install,first-polygons,jobs,
big-raster]``"""

from __future__ import annotations

import argparse
import platform
import sys
import time

from tests.benchmarks import (
    big_raster_bench,
    first_polygons_bench,
    hardening_bench,
    install_bench,
    jobs_bench,
    proxy_bench,
    supervisor_bench,
)

SUITES = {
    "hardening": hardening_bench,
    "proxy": proxy_bench,
    "supervisor": supervisor_bench,
    "install": install_bench,
    "first-polygons": first_polygons_bench,
    "jobs": jobs_bench,
    "big-raster": big_raster_bench,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter waits")
    parser.add_argument("--only", default=",".join(SUITES), help="comma-separated suites")
    args = parser.parse_args()
    print(
        f"geolibre-ml benchmarks on {platform.platform()}, Python {platform.python_version()}, "
        f"{'quick' if args.quick else 'full'} run"
    )
    missed = 0
    for name in args.only.split(","):
        started = time.monotonic()
        print(f"\n[{name}]", flush=True)
        for figure in SUITES[name].run(args.quick):
            print(figure.row(), flush=True)
            missed += figure.ok is False
        print(f"  ({time.monotonic() - started:.0f} s)")
    print(f"\n{missed} target(s) missed.")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
