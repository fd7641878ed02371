"""Start the sd35ui web app: `python demo.py [--model ID|PATH|tiny] [--share] ...` (see --help)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from sd35ui.app.access import AUTH_ENV, auth_from, default_host, exposure_warnings
from sd35ui.core.options import add_model_arguments, add_worker_arguments, load_options

DEFAULT_CACHE_LIMIT_MB = 2048  # as sd35ui.app.server (not imported here: --help and argument errors stay fast)
DEFAULT_CACHE_MAX_AGE_S = 24 * 3600


def whole_number(minimum: int, maximum: int | None = None):
    """An argparse type: a whole number in [minimum, maximum], else a one-line usage error (exit status 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            wanted = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be a whole number {wanted}, got {text!r}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="sd35ui: text-to-image with Stable Diffusion 3.5 Medium")
    add_model_arguments(parser)
    add_worker_arguments(parser, "single images to whichever is free, a sheet's cells")
    server = parser.add_argument_group("server")
    server.add_argument(
        "--host",
        default=default_host(),  # SD35UI_HOST, GRADIO_SERVER_NAME (Spaces: 0.0.0.0), else this machine only
        help="address to bind; 0.0.0.0 serves the network, e.g. in Docker (default: 127.0.0.1)",
    )
    server.add_argument(
        "--port",
        type=whole_number(1, 65535),
        default=os.environ.get("GRADIO_SERVER_PORT", "7860"),  # a string default goes through `type` too
        help="port to serve on, 1-65535 (default: 7860, or GRADIO_SERVER_PORT)",
    )
    server.add_argument("--share", action="store_true", help="also serve through a public Gradio share link")
    server.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help=f"require this login for the page, the API and the files (or set {AUTH_ENV}=user:password, which keeps "
        "the password out of the process list)",
    )
    server.add_argument("--mcp", action="store_true", help="also serve the tools to MCP clients at /gradio_api/mcp/")
    server.add_argument(
        "--outputs",
        default=os.environ.get("SD35UI_OUTPUTS", "outputs"),
        help="folder where every image and sheet is saved as it is made (default: outputs)",
    )
    server.add_argument(
        "--queue-size", type=whole_number(1), default=16, help="jobs that may wait in the queue (default: 16)"
    )
    server.add_argument(
        "--concurrency",
        type=whole_number(1),
        default=None,
        help="GPU jobs at once (default: one per pipeline, so 1 without --devices or --ray)",
    )
    server.add_argument(
        "--cache-limit-mb",
        type=whole_number(1),
        default=DEFAULT_CACHE_LIMIT_MB,
        help="most megabytes of uploads and copies of results the app keeps in Gradio's cache; the oldest go first "
        f"(default: {DEFAULT_CACHE_LIMIT_MB})",
    )
    server.add_argument(
        "--cache-max-age",
        type=whole_number(1),
        default=DEFAULT_CACHE_MAX_AGE_S,
        metavar="SECONDS",
        help=f"delete an upload or a cached result this long after it was made (default: {DEFAULT_CACHE_MAX_AGE_S})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stop_on_sigterm()
    log = logging.getLogger("sd35ui")

    try:
        auth = auth_from(args.auth)
    except ValueError as exc:
        log.error("Error: %s", exc)
        return 2
    for warning in exposure_warnings(args.host, args.share, auth):
        log.warning(warning)
    try:  # before importing Gradio and loading the model: found in a second, not after minutes of loading
        outputs = writable_folder(Path(args.outputs))
        check_port_free(args.host, args.port)
    except ValueError as exc:
        log.error("Error: %s", exc)
        return 1

    from sd35ui.app.ui import AppConfig, create_app, launch
    from sd35ui.core.options import start_workers
    from sd35ui.core.pipeline import PipelineError, get_pipeline, model_banner

    options = load_options(args).resolve()
    log.info(
        "Loading %s (quant=%s, t5=%s, offload=%s, %s on %s)...",
        options.model,
        options.quant,
        options.t5,
        options.offload,
        options.dtype,
        options.device,
    )
    from sd35ui.app import zerogpu

    if zerogpu.on_zerogpu():  # imports `spaces` so that it patches torch before CUDA is touched
        log.info("ZeroGPU Space: GPU time is requested per generation")
    try:  # load before serving: a model that cannot load is an error at start, not per request
        workers = start_workers(options, args.devices, args.ray)
        if workers is None:
            get_pipeline(options)
    except (PipelineError, ValueError) as exc:
        log.error("Error: %s", exc)
        return 1
    except Exception as exc:  # a damaged or incomplete download, a broken install: one clear line, no traceback
        log.error("Error: could not load %s: %s: %s", options.model, type(exc).__name__, exc)
        log.error(
            "If its files are damaged or incomplete, delete them and download again (--model tiny runs the demo)."
        )
        return 1
    banner = model_banner(options)
    if banner:  # after loading: only a model that runs gets a banner
        log.warning("*** %s ***", banner)
    if workers is not None:
        log.info("%d pipelines: %s", len(workers), ", ".join(worker.name for worker in workers))
    concurrency = args.concurrency or (len(workers) if workers else 1)
    config = AppConfig(
        load=options, outputs=outputs, queue_size=args.queue_size, concurrency=concurrency, workers=workers
    )
    try:
        launch(
            create_app(config),
            config,
            host=args.host,
            port=args.port,
            share=args.share,
            auth=auth,
            mcp=args.mcp,
            cache_limit_bytes=args.cache_limit_mb * 2**20,
            cache_max_age_s=args.cache_max_age,
        )
    except OSError as exc:  # e.g. the port was taken while the model loaded
        log.error(
            "Error: could not serve on %s:%s: %s; pass --port N or stop the other server", args.host, args.port, exc
        )
        return 1
    return 0


def stop_on_sigterm() -> None:
    """Stop on SIGTERM (`kill`, `docker stop`, systemd) as on Ctrl-C: the server waits for a KeyboardInterrupt, then
    closes and deletes the app's files in Gradio's cache (`server.serve_until_interrupted`). Python's default for
    SIGTERM ends the process at once, with no cleanup (and as PID 1 in a container it is ignored, until `docker
    stop` kills the process 10 s later)."""
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt, as SIGINT does


def writable_folder(folder: Path) -> Path:
    """`folder`, created if missing and resolved, after checking that a file can be written in it; else ValueError
    with the fix."""
    import tempfile

    try:
        folder = folder.expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sd35ui-write-check-"):
            pass
    except OSError as exc:
        reason = "it is a file, not a folder" if folder.is_file() else exc.strerror or str(exc)
        raise ValueError(f"Cannot write to outputs folder {folder}: {reason}; pass --outputs DIR") from None
    return folder


def check_port_free(host: str, port: int) -> None:
    """ValueError with the fix when `host:port` cannot be bound (another server on it, or an address this machine
    does not have). Binds the way the server will (SO_REUSEADDR), then lets go."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"Cannot serve on --host {host}: {exc.strerror}; pass --host 127.0.0.1 or 0.0.0.0") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ValueError(f"Port {port} is in use: pass --port N or stop the other server") from None
            raise ValueError(f"Cannot serve on {host}:{port}: {exc.strerror or exc}; pass --host or --port") from None


if __name__ == "__main__":
    sys.exit(main())
