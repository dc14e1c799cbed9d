"""YAML read with bounds: configs (through jsonargparse), sweep files and anything else this package reads as YAML.

YAML anchors and aliases (``&a``/``*a``) let a 1 KB file stand for billions of values ("billion laughs"): PyYAML
builds them as shared references, cheaply, but everything that walks the result (a printout, a deep copy, a
comparison) pays for the whole expansion, without bound. Here a document is first composed as a graph, its
expanded size is counted (linear in the file, whatever the nesting), and a document that expands beyond
``MAX_VALUES`` is refused with one line; ordinary aliases (a repeated block) still work. A malformed file names
itself, the line and the column.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .errors import BadFile, MissingFile

MAX_VALUES = (
    100_000  # scalars, lists and mappings after aliases are expanded; real configs hold a few hundred
)


class AliasBomb(BadFile):
    """A YAML document whose aliases expand it beyond ``MAX_VALUES``."""


class TooDeep(BadFile):
    """A YAML document nested deeper than the reader can follow (thousands of ``[`` or indented levels)."""


TOO_DEEP = (
    "its values nest deeper than YAML can be read here (real configs nest a few levels); remove the nesting"
)


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int) -> int:
    """How many values ``node`` stands for once every alias is expanded (capped just above ``limit``)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = limit + 1  # a node that contains itself expands without end
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(child, memo, limit) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(
            _expanded_size(k, memo, limit) + _expanded_size(v, memo, limit) for k, v in node.value
        )
    else:
        total = 1
    memo[key] = min(total, limit + 1)
    return memo[key]


def _where(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def check_expansion(
    text: str, source: str = "YAML", loader: type = yaml.SafeLoader, limit: int = MAX_VALUES
) -> None:
    """Refuse ``text`` if its aliases expand it beyond ``limit`` values (no-op without aliases)."""
    if "*" not in text:  # no alias, nothing to expand
        return
    composer = loader(text)
    try:
        memo: dict[int, int] = {}
        while composer.check_node():
            node = composer.get_node()
            if _expanded_size(node, memo, limit) > limit:
                raise AliasBomb(
                    f"{source}: its YAML aliases (*name) expand it to more than {limit:,} values; write the "
                    f"values out, or use fewer nested aliases"
                )
    finally:
        composer.dispose()


def load(text: str, source: str = "YAML") -> Any:
    """``yaml.safe_load`` with the alias bound; a syntax error names ``source``, the line and the column."""
    try:
        check_expansion(text, source)
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BadFile(f"{source} is not valid YAML{_where(e)}: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise TooDeep(f"{source}: {TOO_DEEP}") from None


def load_file(path: str | Path, what: str = "file") -> Any:
    """The YAML file ``path`` (``what`` names it in errors: ``sweep file``, ``config file``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"{what} '{path}' does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BadFile(f"{what} '{path}' cannot be read ({e})") from None
    return load(text, f"{what} '{path}'")


def check_config_files(paths: list[str], max_depth: int = 10) -> None:
    """Read every config file given with ``--config`` and the files they include (``config: other.yaml``,
    relative to the including file), so a malformed one is named with its line before jsonargparse reads it."""
    todo = [(Path(p), 0) for p in paths]
    seen: set[Path] = set()
    while todo:
        path, depth = todo.pop()
        if path.resolve() in seen or depth > max_depth:
            continue
        seen.add(path.resolve())
        data = load_file(path, "config file")
        included = data.get("config") if isinstance(data, dict) else None
        for inc in included if isinstance(included, list) else [included] if included else []:
            if isinstance(inc, str):
                todo.append(((path.parent / inc) if not Path(inc).is_absolute() else Path(inc), depth + 1))


def bounded_loader(original: Callable[[str], Any]) -> Callable[[str], Any]:
    """jsonargparse's YAML loader (for ``set_loader``) with the alias bound in front of it."""

    def load_bounded(text: str) -> Any:
        try:
            if isinstance(text, str):
                check_expansion(text, "a config value or file")
            return original(text)
        except RecursionError:
            raise TooDeep(f"a config value or file: {TOO_DEEP}") from None

    return load_bounded
