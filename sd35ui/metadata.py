"""PNG metadata: the A1111 `parameters` text chunk (read by many tools) and an exact JSON chunk, both ways.

Written by hand because no maintained library writes or parses the A1111 format; PIL does the chunk I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from PIL import Image, PngImagePlugin

from sd35ui.settings import GenerationSettings

PARAMETERS_KEY = "parameters"  # A1111's key, read by image hosts, ComfyUI, InvokeAI and others
JSON_KEY = "sd35ui"  # our exact, machine-readable settings
SAMPLER = "Euler (flow matching)"  # SD3's FlowMatchEulerDiscreteScheduler


def _quote(value: str) -> str:
    """A1111 JSON-quotes values that hold the separators of its `key: value, ...` line."""
    return json.dumps(value) if any(c in value for c in ',:\n"') else value


def format_parameters(settings: GenerationSettings, model: str, extra: dict[str, Any] | None = None) -> str:
    lines = [settings.prompt]
    if settings.negative_prompt:
        lines.append(f"Negative prompt: {settings.negative_prompt}")
    fields = {
        "Steps": settings.steps,
        "Sampler": SAMPLER,
        "CFG scale": f"{settings.guidance:g}",
        "Seed": settings.seed,
        "Size": f"{settings.width}x{settings.height}",
        "Model": model,
    }
    fields.update(extra or {})
    lines.append(", ".join(f"{k}: {_quote(str(v))}" for k, v in fields.items()))
    return "\n".join(lines)


def png_info(settings: GenerationSettings, model: str, extra: dict[str, Any] | None = None) -> PngImagePlugin.PngInfo:
    """The text chunks for one image: A1111 `parameters` and the exact settings as JSON."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, format_parameters(settings, model, extra))
    payload = {"settings": settings.to_dict(), "model": model, **({"extra": extra} if extra else {})}
    info.add_text(JSON_KEY, json.dumps(payload, ensure_ascii=False))
    return info


_FIELD = re.compile(r'\s*([\w][\w \-/()]*?):\s*("(?:\\.|[^"\\])*"|[^,]*)(?:,|$)')


def parse_parameters(text: str) -> dict[str, Any]:
    """Parse an A1111 `parameters` text into {"prompt", "negative_prompt", "fields": {key: value}}."""
    lines = text.strip("\n").split("\n")
    last = lines[-1] if lines else ""
    fields: dict[str, str] = {}
    if len(lines) > 1 or re.match(r"\s*Steps:", last):
        pos = 0
        for match in _FIELD.finditer(last):
            if match.start() != pos:
                break
            key, value = match.group(1).strip(), match.group(2).strip()
            if value.startswith('"'):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
            fields[key] = value
            pos = match.end()
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
    parsed = parse_parameters(text)
    fields = parsed["fields"]
    values: dict[str, Any] = {"prompt": parsed["prompt"], "negative_prompt": parsed["negative_prompt"]}
    if "Steps" in fields:
        values["steps"] = int(fields["Steps"])
    if "CFG scale" in fields:
        values["guidance"] = float(fields["CFG scale"])
    if "Seed" in fields:
        values["seed"] = int(fields["Seed"])
    if "Size" in fields:
        width, _, height = str(fields["Size"]).partition("x")
        values["width"], values["height"] = int(width), int(height)
    return GenerationSettings(**values)


def read_png_metadata(image: Image.Image | str) -> dict[str, Any]:
    """{"settings": GenerationSettings, "model": str | None, "source": "sd35ui" | "parameters"} from a PNG.

    Raises ValueError when the image carries neither chunk."""
    if isinstance(image, str):
        with Image.open(image) as opened:
            opened.load()
            text = dict(opened.info)
    else:
        text = dict(image.info)
    if JSON_KEY in text:
        payload = json.loads(text[JSON_KEY])
        return {
            "settings": GenerationSettings(**payload["settings"]),
            "model": payload.get("model"),
            "extra": payload.get("extra", {}),
            "source": JSON_KEY,
        }
    if PARAMETERS_KEY in text:
        parsed = parse_parameters(text[PARAMETERS_KEY])
        return {
            "settings": settings_from_parameters(text[PARAMETERS_KEY]),
            "model": parsed["fields"].get("Model"),
            "extra": parsed["fields"],
            "source": PARAMETERS_KEY,
        }
    raise ValueError(
        "This image carries no generation settings (no 'parameters' or 'sd35ui' PNG text chunk). Use a PNG saved by "
        "sd35ui or by an A1111-compatible tool; JPEG and WebP copies lose the settings."
    )
