"""Just enough Dockerfile and .dockerignore parsing to check the images without a Docker engine.

Covers what docker/Dockerfile.* use: line continuations, comments, global ``ARG`` defaults
substituted into ``FROM``, ``COPY``/``ADD`` with flags. Not a general Dockerfile parser.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case, e.g. "COPY"
    arguments: str  # the rest of the logical line, continuations joined
    line: int  # 1-based line where the instruction starts


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Logical instructions of a Dockerfile (comments dropped, ``\\`` continuations joined)."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker too
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1] if continued else stripped)
        if not continued:
            keyword, _, rest = " ".join(pending).partition(" ")
            instructions.append(Instruction(keyword.upper(), rest.strip(), start))
            pending = []
    if pending:
        raise ValueError(f"{path}: instruction at line {start} ends with a dangling '\\'")
    return instructions


def arg_defaults(instructions: list[Instruction]) -> dict[str, str | None]:
    """``ARG name[=default]`` of the whole file (``None`` when an ARG has no default)."""
    defaults: dict[str, str | None] = {}
    for instruction in instructions:
        if instruction.keyword == "ARG":
            name, sep, value = instruction.arguments.partition("=")
            defaults[name.strip()] = (
                shlex.split(value)[0] if sep and value.strip() else ("" if sep else None)
            )
    return defaults


def substitute(text: str, variables: dict[str, str | None]) -> str:
    """Expand ``$NAME``, ``${NAME}`` and ``${NAME:-default}`` like Docker does in FROM."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        value = variables.get(name)
        return value if value else (match.group(2) or "")

    return _VARIABLE.sub(replace, text)


def base_images(instructions: list[Instruction]) -> list[str]:
    """Image references of every ``FROM``, with global ARG defaults substituted."""
    global_args = arg_defaults(
        instructions[: next(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")]
    )
    images = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            images.append(substitute(words[0], global_args))
    return images


def copy_sources(instructions: list[Instruction]) -> list[tuple[Instruction, list[str], str]]:
    """``(instruction, sources, destination)`` of every COPY/ADD from the build context
    (``COPY --from=stage`` copies between stages and is skipped)."""
    copies = []
    for instruction in instructions:
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(instruction.arguments)
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        copies.append((instruction, paths[:-1], paths[-1]))
    return copies


def dockerignore_excludes(patterns: list[str], relative_path: str) -> bool:
    """Whether the build context leaves ``relative_path`` out (last matching pattern wins;
    a pattern matching a folder covers everything under it)."""
    excluded = False
    parts = relative_path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            candidates = [p.rsplit("/", 1)[-1] for p in prefixes]
            pattern = pattern[3:]
        else:
            candidates = prefixes
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            excluded = not negated
    return excluded


def read_dockerignore(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]
