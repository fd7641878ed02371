"""Reading the documentation the tests check: fenced code blocks and front matter from README.md, and the
Dockerfile."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = (ROOT / "README.md",)

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def doc_texts() -> list[str]:
    return [path.read_text(encoding="utf-8") for path in DOC_FILES if path.is_file()]


def code_blocks(language: str) -> list[str]:
    """Every ```<language> block of the docs, in order, each once (the same block in two files counts once)."""
    blocks: list[str] = []
    for text in doc_texts():
        for match in _FENCE.finditer(text):
            if match.group(1) == language and match.group(2) not in blocks:
                blocks.append(match.group(2))
    return blocks


def shell_commands(block: str) -> list[list[str]]:
    """The commands of a shell block as argv lists: continuation lines joined, comments dropped, `&&` split."""
    commands: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            commands.append(shlex.split(part))
    return commands


def documented_commands(program: str) -> list[list[str]]:
    """Every documented shell command whose first word is `program` (or ends with /program)."""
    return [
        argv
        for block in code_blocks("bash")
        for argv in shell_commands(block)
        if argv and (argv[0] == program or argv[0].endswith("/" + program))
    ]


def front_matter() -> str | None:
    """The YAML front matter (for Hugging Face Spaces) of the first doc that starts with one."""
    for text in doc_texts():
        match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
        if match:
            return match.group(1)
    return None


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the (joined) line

    def exec_form(self) -> list[str]:
        """The JSON array of CMD / ENTRYPOINT / VOLUME / HEALTHCHECK ... CMD (exec form)."""
        return json.loads(self.args[self.args.index("[") :])


def dockerfile(path: Path = ROOT / "Dockerfile") -> list[Instruction]:
    """The Dockerfile's instructions, with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    out = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        out.append(Instruction(keyword.upper(), " ".join(args.split())))
    return out


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    """The ENV values the image sets (KEY=VALUE form)."""
    env: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV":
            for item in shlex.split(ins.args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def instructions(image: list[Instruction], keyword: str) -> list[Instruction]:
    """The image's instructions of one kind (FROM, CMD, HEALTHCHECK ...), in order."""
    return [ins for ins in image if ins.keyword == keyword]
