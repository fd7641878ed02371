"""How a message quotes text it did not write: a value from a dropped PNG (a sampler, an axis type, a chunk's
keyword), a file's name, a value typed into the UI or sent to the API, another library's error.

Messages end in Gradio toasts, which render their text as HTML (Gradio's sanitiser removes scripts only: an `<img>`
in a PNG's sampler made the browser fetch its URL, and an axis type's `<form>` showed a working password form). So
quoted text is HTML-escaped here, where the message is written, and every place that shows the message gets it safe,
whichever tab raised it. Pure Python: no gradio.
"""

from __future__ import annotations

import html
from typing import Any

QUOTE_LIMIT = 80  # characters of a quoted value: enough to recognise it, short enough for a one-line toast
ERROR_LIMIT = 300  # characters of another library's error message quoted inside ours


def safe_text(text: str, limit: int = ERROR_LIMIT) -> str:
    """`text` as it may stand inside a message: characters that are not printable (newlines, escape sequences,
    right-to-left overrides, zero-width spaces, lone surrogates) written as escapes (`\\n`, `\\x1b`, `\\u202e`),
    cut to `limit` characters with "…", then HTML-escaped (`<` is `&lt;`: it shows as itself, never as markup)."""
    text = str(text)
    cut = len(text) > limit
    shown = "".join(_printable(c) for c in text[:limit])
    if cut or len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return html.escape(shown, quote=False)


def quoted(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """`value` quoted for a message, as `{value!r}` would be but safe to show: text in single quotes, anything else
    (a number, None, a list read from JSON) as Python writes it; at most `limit` characters (`safe_text`). An int
    of more than `limit` digits is "a number over 10**limit" (Python cannot even write one of 4300 digits)."""
    if isinstance(value, str):
        return f"'{safe_text(value, limit)}'"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"a number over 10**{limit}"
    try:
        text = repr(value)
    except RecursionError:  # JSON nested almost as deeply as Python allows
        return "a deeply nested value"
    except ValueError:  # a list holding an int of 4300 digits or more
        return "a value too long to show"
    return safe_text(text, limit)


def _printable(char: str) -> str:
    return char if char.isprintable() else repr(char)[1:-1]
