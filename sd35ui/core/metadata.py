"""PNG metadata: the A1111 `parameters` text chunk (read by many tools) and an exact JSON chunk, both ways.

Written by hand because no maintained library writes or parses the A1111 format; PIL does the chunk I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from PIL import Image, PngImagePlugin

from sd35ui.core.settings import PARAMS, SLG_KEYS, GenerationSettings

PARAMETERS_KEY = "parameters"  # A1111's key, read by image hosts, ComfyUI, InvokeAI and others
JSON_KEY = "sd35ui"  # our exact, machine-readable settings
# Written after the sampler's name, as sd35ui always has: these are the flow-matching forms of A1111's samplers.
SAMPLER_NOTE = " (flow matching)"


def _quote(value: str) -> str:
    """A1111 JSON-quotes values that hold the separators of its `key: value, ...` line."""
    return json.dumps(value) if any(c in value for c in ',:\n"') else value


# A1111's order of the keys in its last line; keys it does not know follow, then Model.
A1111_ORDER = ("Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size")


def a1111_fields(settings: GenerationSettings) -> dict[str, Any]:
    """The A1111 keys of `settings`, from the parameter table (width and height share "Size": WxH)."""
    fields: dict[str, Any] = {}
    for param in PARAMS:
        if (
            param.name in SLG_KEYS
            and not settings.slg_scale
            or param.name == "skip_layers"
            and not settings.skip_layers
        ):
            continue  # skip-layer guidance off: its settings say nothing (read back, no scale means off); no layers
            # given: the model's own
        if param.name == "t5_prompt" and settings.t5_prompt == "On":
            continue  # T5 is named only when its part was left out
        if param.name == "schedule" and settings.schedule == "Default":
            continue  # as sd35ui 0.2 wrote it: the model's own schedule goes without saying
        if param.name == "sampler":
            fields["Sampler"] = settings.sampler + SAMPLER_NOTE
        elif param.a1111 == "Size":
            fields["Size"] = f"{settings.width}x{settings.height}"
        elif param.a1111:
            value = getattr(settings, param.name)
            fields[param.a1111] = f"{value:g}" if isinstance(value, float) else value
    known = [k for k in A1111_ORDER if k in fields]
    return {k: fields[k] for k in known + [k for k in fields if k not in known]}


def format_parameters(settings: GenerationSettings, model: str, extra: dict[str, Any] | None = None) -> str:
    lines = [settings.prompt]
    if settings.negative_prompt:
        lines.append(f"Negative prompt: {settings.negative_prompt}")
    fields = {**a1111_fields(settings), "Model": model, **(extra or {})}
    lines.append(", ".join(f"{k}: {_quote(str(v))}" for k, v in fields.items()))
    return "\n".join(lines)


def png_info(
    settings: GenerationSettings,
    model: str,
    extra: dict[str, Any] | None = None,
    recipe: dict[str, Any] | None = None,
) -> PngImagePlugin.PngInfo:
    """The text chunks for one image: A1111 `parameters`, and the exact settings as JSON with the load recipe
    (`sd35ui.core.pipeline.recipe`) and the sd35ui version, so an image says how it was made."""
    from sd35ui import __version__

    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, format_parameters(settings, model, extra))
    payload: dict[str, Any] = {"settings": settings.to_dict(), "model": model}
    if extra:
        payload["extra"] = extra
    if recipe:
        payload["recipe"] = recipe
    payload["version"] = __version__
    info.add_text(JSON_KEY, json.dumps(payload, ensure_ascii=False))
    return info


def result_png_info(result: Any, extra: dict[str, Any] | None = None) -> PngImagePlugin.PngInfo:
    """`png_info` for a `GenerationResult`: its settings, model and recipe."""
    return png_info(result.settings, result.model, extra, getattr(result, "recipe", None))


# The settings text sd35ui writes is at most about 134k characters (a 64-cell Prompt S/R sheet of 2000-character
# prompts; its A1111 text can be longer for non-Latin prompts, which it \u-escapes, but then the JSON chunk is read);
# other tools write a few thousand. Longer text is refused before it is parsed.
MAX_PARAMETERS_CHARS = 512 * 1024
MAX_JSON_CHARS = 512 * 1024


class TextTooLong(ValueError):
    """A PNG's settings text is longer than anything sd35ui or an A1111-compatible tool writes."""


def check_length(text: str, limit: int, chunk: str) -> None:
    if len(text) > limit:
        raise TextTooLong(
            f"The PNG's settings text (its {chunk!r} chunk) is too long: {len(text)} characters; the limit is "
            f"{limit}. sd35ui and A1111-compatible tools write far less, so it was not read."
        )


# One `key: ` of A1111's last line. Key characters exclude ":", so the key ends at the first colon; the match is
# anchored where the previous field ended, so each character is looked at a bounded number of times.
_KEY = re.compile(r"\s*(\w[\w \-/()]*):\s*")


def _closing_quote(line: str, start: int) -> int:
    """Index of the quote ending the JSON string whose text starts at `start`, or -1: the first quote preceded by
    an even run of backslashes (each backslash pair is one escaped backslash)."""
    at = start
    while (quote := line.find('"', at)) >= 0:
        run = quote
        while run > start and line[run - 1] == "\\":
            run -= 1
        if (quote - run) % 2 == 0:
            return quote
        at = quote + 1
    return -1


def _fields(line: str) -> dict[str, Any]:
    """The `key: value, key: "json-quoted value", ...` fields at the start of A1111's last line, read left to
    right in linear time (a regex searched with finditer was quadratic: 64 kB without a colon took 30 s).

    A value is JSON-quoted when a quoted string ends at a comma or at the end of the line; otherwise it runs to the
    next comma. Reading stops at the first text that is not a `key:`."""
    fields: dict[str, Any] = {}
    pos = 0
    while key := _KEY.match(line, pos):
        start = key.end()
        close = _closing_quote(line, start + 1) if line.startswith('"', start) else -1
        if close >= 0 and (close + 1 == len(line) or line[close + 1] == ","):
            end = close + 1  # a quoted value; each scan stops at the next field's opening quote at the latest
        else:
            comma = line.find(",", start)
            end = len(line) if comma < 0 else comma
        value: Any = line[start:end].strip()
        if len(value) > 1 and value[0] == value[-1] == '"':  # other values fail json.loads, slowly
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        fields[key.group(1).strip()] = value
        pos = end + 1
    return fields


def parse_parameters(text: str) -> dict[str, Any]:
    """Parse an A1111 `parameters` text into {"prompt", "negative_prompt", "fields": {key: value}}. Raises
    TextTooLong (a ValueError) over MAX_PARAMETERS_CHARS."""
    check_length(text, MAX_PARAMETERS_CHARS, PARAMETERS_KEY)
    lines = text.strip("\n").split("\n")
    last = lines[-1] if lines else ""
    fields: dict[str, Any] = {}
    if len(lines) > 1 or re.match(r"\s*Steps:", last):
        fields = _fields(last)
        if "Steps" in fields:
            lines = lines[:-1]
        else:
            fields = {}
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:") :].lstrip()
        target.append(line)
    return {"prompt": "\n".join(prompt_lines), "negative_prompt": "\n".join(negative_lines), "fields": fields}


def settings_from_parameters(text: str) -> GenerationSettings:
    """Settings from an A1111-style `parameters` text (ours or another tool's); missing values keep defaults."""
    return _settings_from_parsed(parse_parameters(text))


def _settings_from_parsed(parsed: dict[str, Any]) -> GenerationSettings:
    """Settings from parsed A1111 fields, by the parameter table's keys; values are converted, not range-checked
    (`sd35ui.core.history` checks them against the table before they reach the page)."""
    fields = parsed["fields"]
    values: dict[str, Any] = {"prompt": parsed["prompt"], "negative_prompt": parsed["negative_prompt"]}
    for param in PARAMS:
        if param.a1111 == "Size" and "Size" in fields:
            width, _, height = str(fields["Size"]).partition("x")
            values["width"], values["height"] = int(width), int(height)
        elif param.a1111 in fields and param.range is not None:
            values[param.name] = (int if param.range.integer else float)(fields[param.a1111])
        elif param.a1111 in fields and param.choices:
            try:
                values[param.name] = param.choice(fields[param.a1111])
            except ValueError:  # another tool's sampler: kept as written; History says it cannot use it
                values[param.name] = str(fields[param.a1111])
        elif param.a1111 in fields:  # skipped layers: text, checked against the model by History
            values[param.name] = str(fields[param.a1111])
    return GenerationSettings(**values)


def read_png_metadata(image: Image.Image | str) -> dict[str, Any]:
    """{"settings": GenerationSettings, "model": str | None, "source": "sd35ui" | "parameters"} from a PNG.

    Raises ValueError when the image carries neither chunk, TextTooLong (a ValueError) when the chunk it would read
    is longer than MAX_JSON_CHARS or MAX_PARAMETERS_CHARS."""
    if isinstance(image, str):
        with Image.open(image) as opened:
            opened.load()
            text = dict(opened.info)
    else:
        text = dict(image.info)
    if JSON_KEY in text:
        check_length(text[JSON_KEY], MAX_JSON_CHARS, JSON_KEY)
        try:
            payload = json.loads(text[JSON_KEY])
        except RecursionError:  # "[[[[..." : json recurses once per level
            raise ValueError(f"its {JSON_KEY!r} JSON is nested too deeply") from None
        return {
            "settings": GenerationSettings(**payload["settings"]),
            "model": payload.get("model"),
            "extra": payload.get("extra", {}),
            "recipe": payload.get("recipe", {}),  # absent in PNGs of sd35ui before 0.2
            "version": payload.get("version"),
            "source": JSON_KEY,
        }
    if PARAMETERS_KEY in text:
        parsed = parse_parameters(text[PARAMETERS_KEY])  # once: it may be long
        return {
            "settings": _settings_from_parsed(parsed),
            "model": parsed["fields"].get("Model"),
            "extra": parsed["fields"],
            "source": PARAMETERS_KEY,
        }
    raise ValueError(
        "This image carries no generation settings (no 'parameters' or 'sd35ui' PNG text chunk). Use a PNG saved by "
        "sd35ui or by an A1111-compatible tool; JPEG and WebP copies lose the settings."
    )
