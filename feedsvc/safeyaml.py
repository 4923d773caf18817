"""YAML of data files, read safely: timestamps stay strings (dates are localized by
the loader), anchors and aliases are refused before anything is built, escapes cannot
bring back the characters XML forbids, and errors point at the mistake.
"""
from __future__ import annotations

import re

import yaml

from .datafile import XML_FORBIDDEN, clean
from .model import DataError

try:
    BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    BaseLoader = yaml.SafeLoader


class _Loader(BaseLoader):
    """Safe YAML that leaves timestamps as strings: we localize dates ourselves."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in BaseLoader.yaml_implicit_resolvers.items()  # type: ignore[attr-defined]
}


# "&name" or "*name" somewhere: the text may hold an anchor or an alias (or a quoted "Q&A")
_MAY_SHARE = re.compile(r"[&*][^\s,\[\]{}]")


def load_yaml(rel: str, text: str, first_line: int = 1) -> object:
    """`first_line`: the line of the file where `text` starts, for error messages.

    Anchors and aliases are refused: a few hundred bytes of aliases of aliases make a
    value of millions of strings (an "alias bomb"), which every later step (cleaning,
    str() of a date, an error message quoting it) would expand, at gigabytes per load."""
    try:
        if ("&" in text or "*" in text) and _MAY_SHARE.search(text):
            _refuse_aliases(rel, text, first_line)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        raise DataError(rel, yaml_problem(e, first_line)) from None
    except (ValueError, KeyError) as e:     # "!!int 'z'", "!!bool maybe": PyYAML's own
        raise DataError(rel, f"invalid YAML: a tagged value cannot be read ({e})") from None
    # clean text gives clean values, except through an escape ("\v", "\uFFFE")
    dirty = "\\" in text or XML_FORBIDDEN.search(text) is not None
    return _clean_tree(rel, data) if dirty else data


def yaml_problem(e: yaml.YAMLError, first_line: int = 1) -> str:
    """PyYAML's error as a message placed where the mistake is: an unclosed quote at
    the quote that opens it (PyYAML points where its scan gave up, lines later)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context_mark", None)
    if context is not None and "quoted scalar" in (getattr(e, "context", None) or ""):
        mark, problem = context, f"a quote is not closed ({problem})"
    where = f" at line {mark.line + first_line}, column {mark.column + 1}" if mark else ""
    return f"invalid YAML{where}: {problem}"


def _refuse_aliases(rel: str, text: str, first_line: int) -> None:
    """DataError at the first anchor (&name) or alias (*name) of `text`, read as YAML
    events (PyYAML's public parser: nothing is built, so nothing is expanded)."""
    for event in yaml.parse(text, Loader=_Loader):
        anchor = getattr(event, "anchor", None)     # an alias names the anchor it repeats
        if anchor is not None:
            sigil = "*" if isinstance(event, yaml.AliasEvent) else "&"
            mark = event.start_mark
            where = f" at line {mark.line + first_line}, column {mark.column + 1}" if mark else ""
            raise DataError(rel, f"invalid YAML{where}: YAML aliases (*name) and anchors "
                                 f"(&name) are not allowed (found {sigil}{anchor}); write "
                                 "the value out in full")


_MAX_NESTING = 100      # levels of lists and mappings _clean_tree goes into (libyaml: 1000)


def _clean_tree(rel: str, value: object, depth: int = 0) -> object:
    """YAML escapes ("\\v", "\\uFFFE") can make the characters XML forbids: clean them too.
    Recursive, so it refuses what is nested deeper than any front matter (libyaml lets
    1,000 levels through, more than Python's recursion limit allows here)."""
    if isinstance(value, str):
        return clean(value)
    if depth >= _MAX_NESTING and isinstance(value, (list, dict)):
        raise DataError(rel, f"invalid YAML: values are nested more than {_MAX_NESTING} "
                             "levels deep")
    if isinstance(value, list):
        return [_clean_tree(rel, v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {_clean_tree(rel, k, depth + 1): _clean_tree(rel, v, depth + 1)
                for k, v in value.items()}
    return value
