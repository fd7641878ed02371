"""Prompt length: how many tokens CLIP (77) and T5 (256) read of a prompt, and which words they cut.

SD3.5 reads a prompt three times: CLIP-L and CLIP-G read the first 77 tokens (start and end markers included), T5 the
first 256. Words past a limit are silently dropped by the pipeline (diffusers only logs them), so the page and the API
say which. Counted with the loaded pipeline's own tokenizers, exactly as `encode_prompt` tokenizes.
"""

from __future__ import annotations

import copy
import threading
import weakref
from dataclasses import dataclass
from typing import Any

# Counting runs while the pipeline generates, but a Rust tokenizer used from two threads at once raises "Already
# borrowed": counts use copies of the pipeline's tokenizers (made once per pipeline), one count at a time.
_copies: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()  # by pipeline, weakly
_lock = threading.Lock()


@dataclass(frozen=True)
class TokenCount:
    """Tokens of one prompt per encoder, with the limits and the text each one cuts ("" when none)."""

    clip: int
    clip_max: int
    clip_cut: str
    t5: int | None  # None: the pipeline has no T5 (loaded with --t5 drop)
    t5_max: int
    t5_cut: str

    def line(self) -> str:
        """The counts, like "CLIP 12/77 · T5 14/256"."""
        t5 = f"T5 {self.t5}/{self.t5_max}" if self.t5 is not None else "T5 not loaded"
        return f"CLIP {self.clip}/{self.clip_max} · {t5}"

    def warning(self) -> str | None:
        """What is cut, naming the words, or None when every encoder reads the whole prompt."""
        parts = []
        if self.clip_cut:
            parts.append(f"CLIP reads only the first {self.clip_max} tokens and ignores: “{_short(self.clip_cut)}”")
        if self.t5_cut:
            parts.append(f"T5 reads only the first {self.t5_max} tokens and ignores: “{_short(self.t5_cut)}”")
        return "; ".join(parts) + ". Put what matters first or shorten the prompt." if parts else None


def _short(text: str, head: int = 80, tail: int = 40) -> str:
    """Long cut text as its start and its end (the end is what the user typed last)."""
    text = " ".join(text.split())
    return text if len(text) <= head + tail + 3 else f"{text[:head]} … {text[-tail:]}"


def _count(tokenizer: Any, prompt: str, limit: int) -> tuple[int, str]:
    """(tokens with the start/end markers, the prompt's text past `limit`): the tokens from `limit - 1` on are the
    ones the pipeline drops (it keeps limit - 1 and ends with the end marker), located in the prompt by offsets."""
    encoded = tokenizer(
        prompt, padding=False, truncation=False, add_special_tokens=True, return_offsets_mapping=True, verbose=False
    )
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    cut = prompt[offsets[limit - 1][0] :] if len(ids) > limit else ""
    return len(ids), cut.strip()


def count_tokens(pipe: Any, prompt: str) -> TokenCount:
    """Token counts of `prompt` for `pipe`'s CLIP (its tokenizer's limit, 77) and T5 (the pipeline's max sequence
    length: 256 for SD3.5, less for a built-in tiny model)."""
    from sd35ui.core.generate import max_sequence_length

    clip_max = int(getattr(pipe, "tokenizer_max_length", 77))
    t5_max = max_sequence_length(pipe)
    t5, t5_cut = (None, "")
    with _lock:
        if pipe not in _copies:
            _copies[pipe] = (copy.deepcopy(pipe.tokenizer), copy.deepcopy(getattr(pipe, "tokenizer_3", None)))
        clip_tokenizer, t5_tokenizer = _copies[pipe]
        clip, clip_cut = _count(clip_tokenizer, prompt, clip_max)
        if t5_tokenizer is not None:
            t5, t5_cut = _count(t5_tokenizer, prompt, t5_max)
    return TokenCount(clip, clip_max, clip_cut, t5, t5_max, t5_cut)
