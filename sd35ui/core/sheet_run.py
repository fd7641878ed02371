"""Running a contact sheet: `run_sheet` makes every cell on one pipeline (each the image `generate.generate` makes
for its settings, pixel for pixel; each distinct text encoded once; cells reported as they finish), and resume
reads back cells saved before (`take_reused`, `read_cell_image`). `encode_up_front`, `run_cell` and `Encoder` are
the per-cell path `sd35ui.core.workers` runs on each worker. Part of the sheet engine (`sd35ui.core.sheet`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from sd35ui.core import generate
from sd35ui.core.axes import (
    MAX_CELLS,
    MAX_SHEET_PIXELS,
)
from sd35ui.core.cells import cell_key
from sd35ui.core.settings import GenerationSettings
from sd35ui.core.sheet_draw import sheet_image
from sd35ui.core.sheet_plan import (
    Cell,
    SheetSpec,
    check_sheet,
    plan_sheet,
)


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    result: generate.GenerationResult  # image, exact settings, model, timings (seconds)
    reused: bool = False  # read from a cell saved earlier with the same settings, model and recipe (resume)
    source: Path | None = None  # the file a reused cell was read from (`save_cell` links to it, writes nothing)

    @property
    def image(self) -> Image.Image:
        return self.result.image

    @property
    def settings(self) -> GenerationSettings:
        return self.result.settings

    @property
    def seconds(self) -> float:
        return self.result.timings["total"]


@dataclass
class SheetResult:
    spec: SheetSpec  # resolved: the seed actually used
    model: str
    cells: list[CellResult] = field(default_factory=list)  # finished cells, in the order they finished
    stopped: bool = False  # Stop was pressed; `cells` holds what finished before
    seconds: float = 0.0
    first_steps_shared: int = 0  # first transformer calls answered from another cell's (generate.FirstStepCache)

    @property
    def complete(self) -> bool:
        return len(self.cells) == self.spec.n_cells

    @property
    def reused(self) -> int:
        """Cells taken from earlier saved ones rather than generated (resume)."""
        return sum(done.reused for done in self.cells)

    def cell_at(self, row: int, col: int) -> CellResult | None:
        for done in self.cells:
            if done.cell.row == row and done.cell.col == col:
                return done
        return None

    def image(self) -> Image.Image:
        """The contact sheet picture (missing cells grey when the sheet was stopped)."""
        return sheet_image(self)


class SheetOutOfMemory(generate.GenerationOutOfMemory):
    """The GPU ran out of memory during a sheet; `result` holds the cells finished before."""

    def __init__(self, message: str, result: SheetResult) -> None:
        super().__init__(message)
        self.result = result


def _cost(settings: GenerationSettings) -> int:
    """Transformer passes for one cell: two per step with classifier-free guidance, one without, plus skip-layer
    guidance's."""
    return generate.transformer_passes(settings)


def estimate_seconds(cells: Sequence[Cell], done: Sequence[CellResult]) -> float | None:
    """Seconds left for the cells not in `done`, from the time per transformer pass measured so far (None until
    the first cell is timed)."""
    if not done:
        return None
    seconds = sum(r.seconds for r in done)
    passes = sum(_cost(r.settings) for r in done)
    finished = {r.cell.index for r in done}
    left = sum(_cost(c.settings) for c in cells if c.index not in finished)
    return seconds / max(1, passes) * left


ProgressCallback = Callable[[int, int, int, int], None]  # (cell index from 0, cells, step done, steps)
CellCallback = Callable[[CellResult], None]


class Encoder:
    """Each distinct (prompt, negative, guided?, T5) encoded once per sheet, through the shared LRU cache (T5 off
    is the same encoding with T5's part zeroed)."""

    def __init__(self, pipe: Any, cache: generate.PromptCache) -> None:
        self.pipe, self.cache = pipe, cache
        self.known: dict[tuple[str, str, bool, str], generate.Embeddings] = {}
        self.first_steps: generate.FirstStepCache | None = None  # the sheet's shared first transformer calls

    def get(self, settings: GenerationSettings) -> generate.Embeddings:
        key = (settings.prompt, settings.negative_prompt, generate.is_guided(settings.guidance), settings.t5_prompt)
        if key not in self.known:
            self.known[key] = generate.embeddings_for(self.pipe, settings, self.cache)
        return self.known[key]


def read_cell_image(path: Path, settings: GenerationSettings) -> Image.Image | None:
    """The RGB pixels of a saved cell, or None when the file is not a picture of exactly `settings`' size that
    decodes whole (gone, a symlink, another size, a forged header, a damaged or oversized chunk): such a cell is
    made again, never used. The size is checked from the header, before any pixel is decoded."""
    if path.is_symlink():  # resume and loading read only what this app wrote, never what a link points at
        return None
    try:
        with Image.open(path) as image:
            if image.format != "PNG" or image.size != (settings.width, settings.height):
                return None
            return image.convert("RGB")
    # Pillow reports a bad file as OSError, ValueError (a text chunk over its limit), SyntaxError, EOFError,
    # struct.error, zlib.error or DecompressionBombError: every one means "make this cell again".
    except Exception:
        return None


def reused_cell(cell: Cell, path: Path, model: str, recipe: Mapping[str, Any]) -> CellResult | None:
    """A cell read back from `path` (found by `reusable_cells`) instead of generated, or None when that file cannot
    stand for it (`read_cell_image`)."""
    pixels = read_cell_image(path, cell.settings)
    if pixels is None:
        return None
    timings = {"encode": 0.0, "denoise": 0.0, "decode": 0.0, "total": 0.0}
    made = generate.GenerationResult(pixels, cell.settings, model, timings, dict(recipe))
    return CellResult(cell, made, reused=True, source=Path(path))


def run_sheet(
    pipe: Any,
    spec: SheetSpec,
    on_progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    on_cell: CellCallback | None = None,
    *,
    cache: generate.PromptCache | None = None,
    max_cells: int = MAX_CELLS,
    max_pixels: int = MAX_SHEET_PIXELS,
    reuse: Mapping[str, Path] | None = None,
) -> SheetResult:
    """Make every cell of `spec` and return them (the picture: `result.image()`; files: `save_sheet`).

    The size guard runs first. `on_cell` gets each cell as soon as it is decoded; `on_progress(cell, cells, step,
    steps)` after every denoising step. Setting `stop` ends the sheet within one step; finished cells are kept and
    `stopped` is set. Cells are denoised one at a time, so each is pixel for pixel its single image (a batched loop
    was removed: 1.03-1.09x faster on the tiny model, and it broke that identity). Out of GPU memory raises
    `SheetOutOfMemory` (a `GenerationOutOfMemory`) holding the finished cells. `reuse` (`explore.reusable_cells`)
    maps `cell_key`s to saved cells: those are read back, not generated (resume), and reported like the others with
    `reused` set. Under model CPU offload the sheet's texts are all encoded first and the transformer and VAE stay
    on the GPU for every cell (`generate.resident_models`), not moved there and back per cell; all is offloaded at
    the end, also when the sheet stops or fails."""
    import torch

    from sd35ui.core.pipeline import free_memory

    spec = spec.resolved()
    check_sheet(spec, max_cells, max_pixels)
    cells = plan_sheet(spec)
    encoder = Encoder(pipe, cache if cache is not None else generate.prompt_cache)
    encoder.first_steps = generate.FirstStepCache()
    result = SheetResult(spec=spec, model=generate.model_name(pipe))
    start = time.perf_counter()
    cells = _take_reused(pipe, cells, reuse or {}, result, on_cell)
    try:
        with generate.resident_models(pipe):  # the end offloads every model, before the handlers below run
            encode_up_front(pipe, cells, encoder, stop)
            for cell in cells:
                if stop is not None and stop.is_set():
                    result.stopped = True
                    break
                try:
                    with generate.pipe_lock(pipe):
                        done = run_cell(pipe, cell, encoder, len(cells), on_progress, stop)
                except generate.GenerationStopped:
                    result.stopped = True
                    break
                result.cells.append(done)
                if on_cell is not None:
                    on_cell(done)
    except torch.OutOfMemoryError as exc:
        encoder.known.clear()
        pipe.maybe_free_model_hooks()
        free_memory()
        result.seconds = time.perf_counter() - start
        what = f"cell {len(result.cells) + 1} of {len(cells)} of the sheet"
        raise SheetOutOfMemory(generate.out_of_memory_advice(what), result) from exc
    result.seconds = time.perf_counter() - start
    result.first_steps_shared = encoder.first_steps.hits
    return result


def encode_up_front(pipe: Any, cells: list[Cell], encoder: Encoder, stop: threading.Event | None) -> None:
    """Under model CPU offload, every text the cells need encoded before the first cell, so that the text encoders
    take the GPU once and the transformer then keeps it for the whole sheet. Without offload, each cell encodes its
    own as it comes (the same embeddings: `Encoder` keeps one per distinct text for the sheet)."""
    if not generate.offloads_models(pipe) or (stop is not None and stop.is_set()):
        return
    with generate.pipe_lock(pipe):
        for cell in cells:
            encoder.get(cell.settings)


def _take_reused(
    pipe: Any, cells: list[Cell], reuse: Mapping[str, Path], result: SheetResult, on_cell: CellCallback | None
) -> list[Cell]:
    """`take_reused` for the cells of a sheet on `pipe`."""
    if not reuse:
        return cells
    from sd35ui.core.pipeline import recipe

    return take_reused(cells, generate.model_name(pipe), recipe(pipe), reuse, result, on_cell)


def take_reused(
    cells: Sequence[Cell],
    model: str,
    recipe: Mapping[str, Any],
    reuse: Mapping[str, Path],
    result: SheetResult,
    on_cell: CellCallback | None,
) -> list[Cell]:
    """Read back the cells `reuse` holds for `model` loaded as `recipe` (reported at once through `on_cell`);
    returns the cells left to make."""
    left = []
    for cell in cells:
        path = reuse.get(cell_key(cell.settings, model, recipe))
        done = reused_cell(cell, path, model, recipe) if path is not None else None
        if done is None:  # none saved, or deleted, damaged or of another size since: make it again
            left.append(cell)
            continue
        result.cells.append(done)
        if on_cell is not None:
            on_cell(done)
    return left


def run_cell(
    pipe: Any,
    cell: Cell,
    encoder: Encoder,
    n_cells: int,
    on_progress: ProgressCallback | None,
    stop: threading.Event | None,
) -> CellResult:
    """Encode (once per sheet), denoise and decode one cell, as `generate.generate` would make it."""

    def on_step(step: int, total: int) -> None:
        if on_progress is not None:
            on_progress(cell.index, n_cells, step, total)

    from sd35ui.core.pipeline import recipe

    t0 = time.perf_counter()
    embeddings = encoder.get(cell.settings)
    t1 = time.perf_counter()
    latents = generate.denoise(pipe, embeddings, cell.settings, on_step, stop, encoder.first_steps)
    t2 = time.perf_counter()
    image = generate.decode(pipe, latents)[0]
    timings = {"encode": t1 - t0, "denoise": t2 - t1, "decode": time.perf_counter() - t2}
    timings["total"] = sum(timings.values())
    made = generate.GenerationResult(image, cell.settings, generate.model_name(pipe), timings, recipe(pipe))
    return CellResult(cell, made)
