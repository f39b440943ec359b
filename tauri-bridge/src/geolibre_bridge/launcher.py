"""``geolibre-sidecar``: the process the desktop app spawns.

Contract: bind loopback (port 0 by default), print exactly one JSON line on
stdout once connections are accepted, log only to stderr and a file, and exit
by itself (stopping the backend it started) when the parent dies, stdin hits
EOF, on SIGTERM/SIGINT, or on ``POST /shutdown``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import secrets
import socket
import sys
from types import FrameType
from typing import TextIO

from geolibre_env.process_tree import ParentWatch
from geolibre_sidecar import __version__

from geolibre_bridge.watchdog import watch_stdin_eof

log = logging.getLogger("geolibre.launcher")

LOOPBACK_NAMES = {"localhost"}
READY_POLL_S = 0.005
GRACEFUL_SHUTDOWN_S = 5
# How long an idle keep-alive connection stays open (uvicorn's default, made explicit).
KEEP_ALIVE_S = 5


class LaunchError(Exception):
    """Start-up failed; the message is the one line the user sees."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="geolibre-sidecar", description="GeoLibre's ML sidecar (prints one JSON ready line)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: the OS chooses)")
    parser.add_argument("--parent-pid", type=int, help="exit when this process exits")
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow binding a non-loopback address"
    )
    parser.add_argument(
        "--dev", action="store_true", help="development mode: also print URL and token to stderr"
    )
    parser.add_argument(
        "--no-stdin-watch", action="store_true", help="do not exit when stdin reaches EOF"
    )
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves (so port 0 works and the port is known).

    IPPROTO_TCP explicitly: asyncio only enables TCP_NODELAY on accepted
    sockets whose protocol says TCP; a plain socket() added ~45 ms per request.
    """
    host = "127.0.0.1" if host == "localhost" else host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if sys.platform == "win32":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        holder = _port_holder(port) if port else None
        who = f" by {holder}" if holder else ""
        raise LaunchError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}{who}. "
            "Use --port 0 to let the system choose a free port."
        ) from None
    sock.listen(128)  # the real backlog is set when serving starts (descriptor budget)
    sock.set_inheritable(False)
    return sock


def _port_holder(port: int) -> str | None:
    import psutil

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid:
                    try:
                        return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
                    except psutil.Error:
                        return f"pid {conn.pid}"
                return "another program"
    except (psutil.AccessDenied, OSError):
        return None
    return None


async def serve(args: argparse.Namespace, ready_out: TextIO) -> int:
    import uvicorn
    from geolibre_env.redact import register_secret
    from geolibre_sidecar.app import begin_shutdown, create_app
    from geolibre_sidecar.data_lock import DataFolderLock
    from geolibre_sidecar.logs import configure_logging
    from geolibre_sidecar.settings import SidecarSettings

    from geolibre_bridge.connections import (
        AcceptErrorSummary,
        ConnectionLimits,
        RepeatSummary,
        descriptor_budget,
        guarded_protocol,
        raise_descriptor_limit,
    )

    settings = SidecarSettings.from_environ()
    # First, before anything is written (the log file included): a second sidecar
    # on this data folder stops here with one sentence naming the first.
    data_lock = DataFolderLock(settings.env.paths.data)
    data_lock.acquire()
    configure_logging(settings.log_level, settings.env.paths.sidecar_log)
    token = settings.token or secrets.token_hex(16)  # 128 bits
    register_secret(token)
    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    shown_host = args.host if ":" not in args.host else f"[{args.host}]"
    url = f"http://{'127.0.0.1' if args.host == 'localhost' else shown_host}:{port}"
    data_lock.announce(url=url)

    server: uvicorn.Server | None = None

    def request_exit(reason: str) -> None:
        log.info("exiting: %s", reason)
        if server is not None:
            server.should_exit = True
        begin_shutdown(app)

    app = create_app(settings, token=token, request_shutdown=lambda: request_exit("POST /shutdown"))
    cap, backlog = descriptor_budget(settings.max_connections, raise_descriptor_limit())
    limits = ConnectionLimits(max_connections=cap, head_timeout_s=settings.header_timeout_s)
    asyncio.get_running_loop().set_exception_handler(AcceptErrorSummary())
    logging.getLogger("uvicorn.error").addFilter(RepeatSummary("Invalid HTTP request received."))
    config = uvicorn.Config(
        app,
        http=guarded_protocol(limits),
        # uvicorn's own cap: connections stay at ours (the protocol makes room), so
        # this answers 503 only when more requests than that run at once.
        limit_concurrency=limits.max_connections + 1,
        timeout_keep_alive=KEEP_ALIVE_S,
        # The listen queue, and how many connections asyncio accepts per wake-up.
        backlog=backlog,
        log_config=None,
        access_log=False,
        server_header=False,
        # Loopback only, no reverse proxy in front: X-Forwarded-* must not be trusted,
        # and not parsing them saves time on every request.
        proxy_headers=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    uvicorn_handle_exit = server.handle_exit

    def handle_exit(sig: int, frame: FrameType | None) -> None:
        # uvicorn installs this with signal.signal: it may run between any two
        # bytecodes, so the app hears of the exit through the loop, not from here.
        uvicorn_handle_exit(sig, frame)
        loop.call_soon_threadsafe(begin_shutdown, app)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    watchers: list[asyncio.Task[None]] = []
    if args.parent_pid:
        watch = ParentWatch(args.parent_pid)
        on_parent_exit = watch.wait_for_exit(lambda: request_exit("parent exited"))
        watchers.append(asyncio.create_task(on_parent_exit))
    if not args.no_stdin_watch:
        watch_stdin_eof(loop, lambda: request_exit("stdin closed (the parent went away)"))

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(READY_POLL_S)
        line = {
            "event": "ready",
            "url": url,
            "port": port,
            "token": token,
            "pid": os.getpid(),
            "version": __version__,
        }
        ready_out.write(json.dumps(line, separators=(",", ":")) + "\n")
        ready_out.flush()
        log.info("ready on %s (pid %d)", url, os.getpid())
        if args.dev:
            sys.stderr.write(
                f"\nGeoLibre sidecar {__version__} is ready.\n  URL:   {url}\n  Token: {token}\n"
                f"  Try:   curl -H 'X-GeoLibre-Token: {token}' {url}/ml/status\n\n"
            )
            sys.stderr.flush()

    watchers.append(asyncio.create_task(announce()))
    try:
        await server.serve(sockets=[sock])
    finally:
        for task in watchers:
            task.cancel()
        sock.close()
        data_lock.release()
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> None:
    # stdout is the handshake channel: keep everything else off it for good.
    ready_out = sys.stdout
    sys.stdout = sys.stderr
    args = parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        print(
            f"geolibre-sidecar: refusing to listen on {args.host}: the sidecar serves only this "
            "computer. Pass --allow-remote if you really mean it.",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        code = asyncio.run(serve(args, ready_out))
    except LaunchError as exc:
        print(f"geolibre-sidecar: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 0
    except Exception as exc:  # a config error or similar: one line, no traceback
        from geolibre_env.errors import GeoLibreError

        if not isinstance(exc, GeoLibreError):
            logging.getLogger("geolibre").exception("start-up failed")
        print(f"geolibre-sidecar: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
