"""The command line: `python -m sd35ui generate ...` and `python -m sd35ui sheet ...`, on the UI's service."""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path
from typing import Any

from sd35ui.core.options import add_model_arguments, add_worker_arguments, load_options, start_workers
from sd35ui.core.settings import PARAMS, SD35_MEDIUM, Param


def _add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per generation setting, from the parameter table (`sd35ui.core.settings.PARAMS`)."""
    for param in PARAMS:
        kwargs: dict[str, Any] = {"dest": param.name, "default": None, "help": _flag_help(param)}
        if param.kind == "text":
            kwargs.update(required=param.required, default=None if param.required else "")
        elif param.kind in ("choice", "layers"):
            kwargs["type"] = str  # any case, or a list like "7, 8, 9": validation says what is valid
        else:
            kwargs["type"] = int if param.kind in ("size", "seed") else float
        parser.add_argument(param.cli, **kwargs)


def _flag_help(param: Param) -> str:
    if param.kind == "text":
        return param.help
    if param.kind == "size":
        return f"{param.help} (default: the model's size, {SD35_MEDIUM.default_size} for SD3.5)"
    if param.kind == "seed":
        return f"{param.help} (default: random, printed)"
    if param.kind == "choice":
        return f"{param.help}: {', '.join(param.choices)} (default: {param.choices[0]})"
    if param.kind == "layers":
        return f"{param.help} (SD3.5 Medium's: {', '.join(map(str, SD35_MEDIUM.skip_layers))})"
    assert param.range is not None
    default = f"the model's, {SD35_MEDIUM.default_steps} for SD3.5" if param.name == "steps" else param.range.default
    return f"{param.help}: {param.range.describe()} (default: {default})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sd35ui", description="sd35ui: SD3.5 Medium from the shell")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="make one image")
    _add_settings_arguments(gen)
    gen.add_argument("--out", required=True, help="the PNG file to write (settings embedded)")
    add_model_arguments(gen)

    from sd35ui.core import sheet

    sh = commands.add_parser(
        "sheet",
        help="make a contact sheet: one image per combination of X and Y values",
        description=f"Axes: {', '.join(sheet.AXIS_CHOICES)}. Values: {sheet.FORMAT_HELP}.",
    )
    _add_settings_arguments(sh)
    sh.add_argument(
        "--x",
        default=f"{sheet.DEFAULT_X_TYPE}={sheet.DEFAULT_X_VALUES}",
        help="X axis as TYPE=VALUES, e.g. guidance=3,4.5,6 (default: %(default)s)",
    )
    sh.add_argument(
        "--y",
        default=f"{sheet.DEFAULT_Y_TYPE}={sheet.DEFAULT_Y_VALUES}",
        help="Y axis as TYPE=VALUES, e.g. steps=10,20,40, or 'none' for a single strip (default: %(default)s)",
    )
    for flag, name in (("--z", "Z"), ("--w", "W")):
        sh.add_argument(flag, default="none", help=f"{name} axis (one sub-sheet per value) as TYPE=VALUES, or none")
    sh.add_argument("--times", action="store_true", help="caption every cell with its generation time")
    sh.add_argument("--margin", type=int, default=0, help="pixels between cells")
    sh.add_argument("--no-legend", action="store_true", help="no axis labels or title")
    sh.add_argument("--swap", action="store_true", help="swap the axes")
    sh.add_argument("--out", required=True, help="the sheet PNG to write (axes and settings embedded)")
    sh.add_argument(
        "--cells-dir",
        default=None,
        help="also write every cell as its own PNG (with its settings) and the explorer page (index.html) here",
    )
    add_model_arguments(sh)
    add_worker_arguments(sh, "the cells")
    return parser


def _progress_bar(total_label: str):
    from tqdm import tqdm

    bar = tqdm(desc=total_label, unit="step", file=sys.stderr)

    def on_step(i: int, n: int) -> None:
        bar.total = n
        bar.n = i
        bar.refresh()

    return bar, on_step


def _settings(args: argparse.Namespace) -> tuple[Any, Any]:
    """The resolved load options and the validated settings the flags ask for (the model's own defaults where a
    flag is not given); prints the model's banner, if any."""
    from sd35ui.core.pipeline import model_banner, model_spec
    from sd35ui.core.settings import GenerationSettings

    options = load_options(args).resolve()
    spec = model_spec(options.model)
    given = {p.name: getattr(args, p.name) for p in PARAMS if getattr(args, p.name) is not None}
    settings = GenerationSettings.validated(spec, **given)  # what is not given: the model's own defaults
    banner = model_banner(options)
    if banner:
        print(f"note: {banner}", file=sys.stderr)
    return options, settings


def run_generate(args: argparse.Namespace) -> int:
    from sd35ui.core import metadata, storage
    from sd35ui.core.generate import generate
    from sd35ui.core.pipeline import get_pipeline

    options, settings = _settings(args)
    pipe = get_pipeline(options)
    bar, on_step = _progress_bar("generating")
    with bar:
        result = generate(pipe, settings, on_step=on_step)
    out = storage.save_png(result.image, metadata.result_png_info(result), Path(args.out))
    print(f"{out}\nseed: {result.seed}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sd35ui.core.generate import GenerationOutOfMemory
    from sd35ui.core.pipeline import PipelineError

    try:
        if args.command == "generate":
            return run_generate(args)
        return run_sheet(args)
    except (ValueError, PipelineError, GenerationOutOfMemory) as exc:
        # Messages quote user text HTML-escaped for the toasts (`sd35ui.core.quoting`); a terminal shows it plain.
        print(f"error: {html.unescape(str(exc))}", file=sys.stderr)
        return 2


def _axis(text: str, flag: str) -> tuple[str | None, str]:
    if text.strip().lower() in ("", "none"):
        return None, ""
    kind, sep, values = text.partition("=")
    if not sep:
        raise ValueError(f"{flag} must look like TYPE=VALUES, e.g. {flag} guidance=3,4.5,6; got {text!r}.")
    return kind.strip(), values


def run_sheet(args: argparse.Namespace) -> int:
    from sd35ui.core import metadata, sheet, storage
    from sd35ui.core.pipeline import get_pipeline, model_spec

    options, base = _settings(args)
    spec = model_spec(options.model)
    x_type, x_values = _axis(args.x, "--x")
    if x_type is None:
        raise ValueError("--x is required: a sheet needs at least one axis.")
    y_type, y_values = _axis(args.y, "--y")
    sheet_spec = sheet.make_spec(
        base,
        x_type,
        x_values,
        y_type,
        y_values,
        show_times=args.times,
        margin=args.margin,
        legend=not args.no_legend,
        swap=args.swap,
        model=spec,
        outer=(_axis(args.z, "--z"), _axis(args.w, "--w")),
    )  # make_spec guards the sheet's size, as for every sheet
    pool = start_workers(load_options(args), args.devices, args.ray)
    if pool is not None:
        from sd35ui.core import workers

        run, on = workers.run_sheet_on, pool
    else:
        run, on = sheet.run_sheet, get_pipeline(options)
    cells = sheet.plan_sheet(sheet_spec)
    from tqdm import tqdm

    from sd35ui.core.generate import loop_length

    with tqdm(total=sum(loop_length(c.settings) for c in cells), unit="step", file=sys.stderr) as bar:

        def on_progress(i: int, n: int, step: int, steps: int) -> None:
            bar.set_description(f"cell {i + 1}/{n}")
            bar.update(1)

        result = run(on, sheet_spec, on_progress=on_progress)
    out = Path(args.out)
    storage.save_png(result.image(), sheet.sheet_png_info(result), out)
    print(out)
    if args.cells_dir:
        from sd35ui.core import explorer_page

        folder = Path(args.cells_dir)
        for done in sorted(result.cells, key=lambda d: d.cell.index):
            path = sheet.cell_path(done, folder / out.name)
            storage.save_png(done.image, metadata.result_png_info(done.result), path)
            print(path)
        print(explorer_page.write_explorer(folder, sheet.explore_manifest(result, folder / out.name)))
    print(f"seed: {sheet_spec.base.seed}")
    return 0
