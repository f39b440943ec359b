"""The tile runner as a long-lived worker, run by path with the MODEL environment's
Python under the backend's guard (``process_guard --stdio``)::

    python tile_worker.py

It says ``{"event": "ready", "pid": N}``, then takes one request a line on stdin,
``{"op": "cut", "args": [raster, folder, tile, overlap]}`` or ``{"op": "merge",
"args": [folder]}``, and answers with :mod:`tile_runner`'s JSON lines followed by
``{"event": "done", "code": N}``. One process for every job: rasterio, shapely and
numpy are imported once, not once per step. A request that raises is answered
with an error line (its traceback goes to stderr, the guard's log) and the worker
serves on; EOF on stdin ends it.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import tile_runner  # its sibling: a script's own folder is first on sys.path

OPS = ("cut", "merge")


def _say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def handle(line: str) -> int:
    """Run one request line; its exit code (tile_runner's)."""
    try:
        request = json.loads(line)
        op, args = request["op"], [str(a) for a in request.get("args", [])]
    except (ValueError, KeyError, TypeError):
        _say(event="error", detail="The tile worker got a request it cannot read.")
        return 2
    if op not in OPS:
        _say(event="error", detail=f"The tile worker has no step named {op!r}.")
        return 2
    try:
        return tile_runner.main([op, *args])
    except Exception as exc:  # one request's failure must not end the worker
        traceback.print_exc()
        _say(event="error", detail=f"The tile runner's {op} failed: {str(exc)[:300]}")
        return 1


def main() -> int:
    _say(event="ready", pid=os.getpid())
    for line in sys.stdin:
        if line.strip():
            _say(event="done", code=handle(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
