"""The command line: `python -m sd35ui generate ...` and `python -m sd35ui sheet ...`, on the UI's service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sd35ui.options import add_model_arguments, load_options
from sd35ui.settings import RANGES


def _add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, help="what the image should show")
    parser.add_argument("--negative-prompt", default="", help="what it should not show")
    parser.add_argument("--steps", type=float, default=RANGES["steps"].default, help="1-50 (default 40)")
    parser.add_argument("--guidance", type=float, default=RANGES["guidance"].default, help="1.0-10.0 (default 4.5)")
    parser.add_argument("--width", type=int, default=None, help="multiple of 16 (default: the model's size)")
    parser.add_argument("--height", type=int, default=None, help="multiple of 16 (default: the model's size)")
    parser.add_argument("--seed", type=int, default=None, help="0-2147483647 (default: random, printed)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sd35ui", description="sd35ui: SD3.5 Medium from the shell")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="make one image")
    _add_settings_arguments(gen)
    gen.add_argument("--out", required=True, help="the PNG file to write (settings embedded)")
    add_model_arguments(gen)
    return parser


def _progress_bar(total_label: str):
    from tqdm import tqdm

    bar = tqdm(desc=total_label, unit="step", file=sys.stderr)

    def on_step(i: int, n: int) -> None:
        bar.total = n
        bar.n = i
        bar.refresh()

    return bar, on_step


def run_generate(args: argparse.Namespace) -> int:
    from sd35ui import metadata, storage
    from sd35ui.generate import generate
    from sd35ui.pipeline import get_pipeline, model_banner, model_spec
    from sd35ui.settings import GenerationSettings

    options = load_options(args).resolve()
    spec = model_spec(options.model)
    settings = GenerationSettings.validated(
        spec,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        steps=args.steps,
        guidance=args.guidance,
        width=args.width if args.width is not None else spec.default_size,
        height=args.height if args.height is not None else spec.default_size,
        seed=args.seed,
    )
    banner = model_banner(options)
    if banner:
        print(f"note: {banner}", file=sys.stderr)
    pipe = get_pipeline(options)
    bar, on_step = _progress_bar("generating")
    with bar:
        result = generate(pipe, settings, on_step=on_step)
    out = storage.save_png(result.image, metadata.png_info(result.settings, result.model), Path(args.out))
    print(f"{out}\nseed: {result.seed}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sd35ui.generate import GenerationOutOfMemory
    from sd35ui.pipeline import PipelineError

    try:
        if args.command == "generate":
            return run_generate(args)
        return run_sheet(args)
    except (ValueError, PipelineError, GenerationOutOfMemory) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_sheet(args: argparse.Namespace) -> int:
    raise NotImplementedError(args.command)
