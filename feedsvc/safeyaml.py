"""YAML of data files, read safely: timestamps stay strings (dates are localized by
the loader), anchors and aliases are refused before anything is built, escapes cannot
bring back the characters XML forbids, and errors point at the mistake.
"""
from __future__ import annotations

import re
from functools import lru_cache

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
    if PLAIN_FIRST:
        plain = plain_mapping(text)
        if plain is not None:
            return plain
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


# -- a speed trick: the plain front matter most files hold, read without PyYAML ---------
# Most front matters are lines of `key: value` and `- item`, one scalar a line.  PyYAML
# builds those in Python, node by node (about 54 us a file, a third of reading one);
# `plain_mapping` reads them with one regular expression a line, and gives up (None: the
# caller loads the text with PyYAML) at anything else: a comment, a tab, a quote or
# escape it does not handle, a nested or flow collection, an anchor, a block scalar, a
# line that continues a value, text YAML reads otherwise (`: `, ` #`, an indicator
# first, spaces around a value) or a plain scalar that PyYAML's own resolvers (those of
# `_Loader`, no timestamps) would not read as a string (`yes`, `12`, `1:20`, `~`).
# tests/test_tricks.py holds it to `yaml.load`.  The bench turns it off (bench/tricks.py).
PLAIN_FIRST = True
_KEY_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?")
_ITEM_LINE = re.compile(r"( *)- (.*)")
# what PyYAML reads as printable, but for tab, CR, NEL, BOM and the line separators
_PLAIN_TEXT = re.compile("[\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe"
                         "\uff00-\ufffd\U00010000-\U0010ffff]*")
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_UNSURE = object()      # a value plain_mapping does not read as YAML would


def plain_mapping(text: str) -> dict[str, object] | None:
    """What `yaml.load(text)` gives for a plain front matter, or None (see above)."""
    if not text or "\\" in text or not _PLAIN_TEXT.fullmatch(text):
        return None
    out: dict[str, object] = {}
    items: list[object] | None = None      # the list the last key holds
    indent = None
    key = ""
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        m = _KEY_LINE.fullmatch(line)
        if m and _plain_key(m.group(1)):
            key, value = m.group(1), m.group(2)
            if value is None:
                items, indent = [], None
                out[key] = None
                continue
            items, out[key] = None, _scalar(value)
        elif (m := _ITEM_LINE.fullmatch(line)) and items is not None and \
                indent in (None, m.group(1)):
            indent = m.group(1)
            items.append(_scalar(m.group(2)))
            out[key] = items
        else:
            return None
        if out[key] is _UNSURE or (items and items[-1] is _UNSURE):
            return None
    return out


def _scalar(value: str) -> object:
    """A one-line scalar as PyYAML reads it, or _UNSURE."""
    if not value or value[0] == " " or value[-1] == " ":
        return _UNSURE
    if value[0] in "\"'":
        quote = value[0]
        inner = value[1:-1]
        return inner if len(value) > 1 and value[-1] == quote and quote not in inner \
            else _UNSURE
    if value[0] in _INDICATORS or ": " in value or " #" in value or value[-1] == ":" or \
            not _plain_string(value):
        return _UNSURE
    return value


# the regular expressions PyYAML tries on a plain scalar, by its first character
_WILD = tuple(rx for _, rx in _Loader.yaml_implicit_resolvers.get(None, []))
_RESOLVERS = {ch: tuple(rx for _, rx in resolvers) + _WILD
              for ch, resolvers in _Loader.yaml_implicit_resolvers.items() if ch is not None}


def _plain_string(value: str) -> bool:
    """Whether PyYAML reads this plain scalar as a string (no resolver of ours matches)."""
    return not any(rx.match(value) for rx in _RESOLVERS.get(value[0], _WILD))


_plain_key = lru_cache(maxsize=256)(_plain_string)     # keys: a few names, again and again


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
