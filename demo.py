"""Start the sd35ui web app: `python demo.py [--model ID|PATH|tiny] [--share] ...` (see --help)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from sd35ui.access import AUTH_ENV, auth_from, default_host, exposure_warnings
from sd35ui.options import add_model_arguments, load_options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="sd35ui: text-to-image with Stable Diffusion 3.5 Medium")
    add_model_arguments(parser)
    server = parser.add_argument_group("server")
    server.add_argument(
        "--host",
        default=default_host(),  # SD35UI_HOST, GRADIO_SERVER_NAME (Spaces: 0.0.0.0), else this machine only
        help="address to bind; 0.0.0.0 serves the network, e.g. in Docker (default: 127.0.0.1)",
    )
    server.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
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
    server.add_argument("--queue-size", type=int, default=16, help="jobs that may wait in the queue (default: 16)")
    server.add_argument("--concurrency", type=int, default=1, help="GPU jobs at once (default: 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("sd35ui")

    from pathlib import Path

    from sd35ui.pipeline import PipelineError, get_pipeline, model_banner
    from sd35ui.ui import AppConfig, create_app, launch

    try:
        auth = auth_from(args.auth)
    except ValueError as exc:
        log.error("Error: %s", exc)
        return 2
    for warning in exposure_warnings(args.host, args.share, auth):
        log.warning(warning)
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
    from sd35ui import zerogpu

    if zerogpu.on_zerogpu():  # imports `spaces` so that it patches torch before CUDA is touched
        log.info("ZeroGPU Space: GPU time is requested per generation")
    try:
        get_pipeline(options)  # load before serving: a model that cannot load is an error at start, not per request
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
    config = AppConfig(
        load=options, outputs=Path(args.outputs).resolve(), queue_size=args.queue_size, concurrency=args.concurrency
    )
    launch(create_app(config), config, host=args.host, port=args.port, share=args.share, auth=auth, mcp=args.mcp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
