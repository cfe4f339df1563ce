"""YAML syntax errors as sentences a user understands.

PyYAML says what its parser expected, in its own terms ("while parsing a block
collection: expected <block end>, but found '?'"). :func:`yaml_problem` turns each of
its common errors into a located :class:`~replay.errors.Problem` that says what is wrong
in the file's terms (a line indented less than the mapping it belongs to, a value with a
second ``': '``, a quote never closed), what was found, and what to do. An error it does
not know keeps PyYAML's words, without the jargon of its context.

Pure: it reads the error and the file's text, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from replay.errors import Problem

#: Every YAML problem's message starts with this.
PREFIX = "not valid YAML: "
_INDENTATION = (
    "check the indentation of the lines above: the keys of one mapping start in the same "
    "column, as do the items ('- ') of one list"
)
#: PyYAML's names of its tokens, as a user would say them.
_TOKENS = {
    "<block mapping start>": "a key",
    "?": "a key",
    "-": "a list item ('- ')",
    "<block sequence start>": "a list item ('- ')",
    "<block entry>": "a list item ('- ')",
    "<scalar>": "a value",
    "<alias>": "an alias (*name)",
    "<anchor>": "an anchor (&name)",
    "<tag>": "a tag (!name)",
    "<flow sequence start>": "a '['",
    "<flow mapping start>": "a '{'",
    "[": "a '['",
    "{": "a '{'",
    "]": "a ']'",
    "}": "a '}'",
    ",": "a ','",
    ":": "a ':'",
    "<stream end>": "the end of the file",
    "<document start>": "a '---' line",
    "<document end>": "a '...' line",
}


@dataclass(frozen=True)
class _Where:
    """A place in the text, 1-based, with its line's text."""

    line: int
    column: int
    text: str
    #: Every line of the file (for looking at the lines above).
    text_above: tuple[str, ...] = ()

    @property
    def content(self) -> str:
        """The line's text from its first non-space character, shortened to be shown."""
        shown = self.text.strip()
        return repr(shown if len(shown) <= 40 else shown[:37] + "...")

    @property
    def starts_line(self) -> bool:
        """Whether nothing but spaces (and a '- ') comes before this column on its line."""
        before = self.text[: self.column - 1].strip()
        return before in ("", "-")


def yaml_problem(error: yaml.MarkedYAMLError, text: str, file: str) -> Problem:
    """The located problem of a text PyYAML's parser refused with ``error``."""
    lines = text.splitlines() or [""]

    def where(mark: yaml.Mark | None) -> _Where | None:
        if mark is None:
            return None
        line = lines[mark.line] if mark.line < len(lines) else ""
        return _Where(mark.line + 1, mark.column + 1, line, tuple(lines))

    problem = error.problem or ""
    found = where(error.problem_mark)
    context = where(error.context_mark)
    for pattern, explain in _EXPLAINED:
        match = pattern.search(problem)
        if match and (found or context):
            at, message, expected, shown = explain(match, error.context or "", found, context)
            return Problem(file, at.line, at.column, "", PREFIX + message, expected, shown)
    place = found or context
    line, column = (place.line, place.column) if place else (0, 0)
    what = problem or "not valid YAML"
    if error.context and not error.context.startswith("while "):
        what = f"{error.context}: {what}"
    return Problem(file, line, column, "", PREFIX + what)


_Explained = tuple[_Where, str, str, str]


def _block_end(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    token = match.group(1)
    assert found is not None
    what = _TOKENS.get(token, repr(token))
    kind = "list" if "collection" in context or "sequence" in context else "mapping"
    if start is None:
        return (found, f"{what} where none can be; {_INDENTATION}", "", found.content)
    outer = _Level(start.line, start.column, kind)
    expected = f"the {kind}'s next {outer.part} at column {start.column}, or an outer one's"
    if not found.starts_line:
        if token == "<scalar>":
            message = (
                "more text after a value on this line (after a closing quote?): quote the "
                "whole value, or remove what follows it"
            )
        else:
            message = (
                f"{what} after a value on this line: quote the value if it is text "
                "(YAML reads ':', '[', ']', '{', '}', ',' and '#' specially)"
            )
        return (found, message, "the end of the line", found.content)
    if found.column == start.column:
        if kind == "mapping" and token not in ("-", "<block sequence start>", "<block entry>"):
            message = (
                f"{what} where the mapping above (line {start.line}, column {start.column}) "
                f"expects its next key; {_INDENTATION}"
            )
        elif kind == "mapping":
            message = (
                f"{what} among the keys of the mapping above (line {start.line}, column "
                f"{start.column}): line it up with the other items of its list, or put the "
                "list under a key that ends with ':'"
            )
        else:
            message = (
                f"{what} where the list above (line {start.line}, column {start.column}) "
                "expects another item: indent it under the item it belongs to, or start it "
                "with '- ' to make it a new item"
            )
        return (found, message, expected, found.content)
    inner = _deeper(found, start)
    if found.column < start.column:
        message = (
            f"this line is indented less than {outer.described('it belongs to')}; {_INDENTATION}"
        )
    elif inner is not None:
        message = (
            f"this line is indented less than {inner.described('above it')} and more than "
            f"{outer.described('around it')}: indent it to one of those columns; "
            f"{_INDENTATION}"
        )
        expected = f"column {inner.column} or column {outer.column}"
    else:
        message = (
            f"this line is indented more than {outer.described('it belongs to')}: indent it "
            f"to column {outer.column} like the other {outer.part}s, or check the indentation "
            "of the lines above"
        )
    return (found, message, expected, f"{found.content} at column {found.column}")


@dataclass(frozen=True)
class _Level:
    """Where a mapping's keys or a list's items start."""

    line: int
    column: int
    kind: str

    @property
    def part(self) -> str:
        return "item" if self.kind == "list" else "key"

    def described(self, where: str) -> str:
        """``the mapping above it (keys at line 4, column 5)``."""
        if self.kind == "text":
            return f"the text {where} (line {self.line}, column {self.column})"
        return f"the {self.kind} {where} ({self.part}s at line {self.line}, column {self.column})"


def _deeper(found: _Where, start: _Where) -> _Level | None:
    """The nearest mapping or list above ``found`` (and below ``start``) that is indented
    more than it: the one a line indented between two levels was probably meant for."""
    lines = found.text_above
    for number in range(found.line - 1, start.line - 1, -1):
        levels = [
            level for level in _levels(number, lines[number - 1]) if level.column > found.column
        ]
        if levels:
            return levels[0]
    return None


def _levels(number: int, text: str) -> list[_Level]:
    """The levels a line opens: a list item's '- ' and what follows it, or a key."""
    stripped = text.lstrip(" ")
    if not stripped or stripped.startswith("#"):
        return []
    column = len(text) - len(stripped) + 1
    levels = []
    while stripped.startswith("- ") or stripped == "-":
        levels.append(_Level(number, column, "list"))
        rest = stripped[1:].lstrip(" ")
        column += len(stripped) - len(rest)
        stripped = rest
    if stripped:
        mapping = ": " in stripped or stripped.rstrip().endswith(":")
        levels.append(_Level(number, column, "mapping" if mapping else "text"))
    return levels


def _mapping_values(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    assert found is not None
    before = found.text[: found.column - 1]
    if ": " in before or before.rstrip().endswith(":"):
        message = (
            "a second ': ' on this line: a value that contains ': ' must be quoted "
            "(description: 'hello: world')"
        )
        return (found, message, "one 'key: value' per line", found.content)
    # A key on a line of its own, read as more of the value above it.
    key = _Where(found.line, _indent(found.text) + 1, found.text, found.text_above)
    above = _line_above(found)
    if above is None:
        message = "this key is indented under nothing: start it in the first column"
        return (key, message, "a key in the first column", key.content)
    number, text = above
    levels = _levels(number, text)
    last = levels[-1] if levels else None
    if last is not None and last.kind == "text":
        message = (
            f"the line above (line {number}) has no ':', so this line is read as more of its "
            f"text: if the line above is a key, add its ':' ({text.strip()!r} -> "
            f"{_with_colon(text.strip())!r}); if this line is a key of its own, indent it as "
            "the keys around it"
        )
        return (key, message, f"a ':' after the key on line {number}", repr(text.strip()))
    column = last.column if last is not None else 1
    message = (
        f"this key is indented more than the key above it (line {number}, column {column}), "
        f"which already has a value: indent it to column {column} to make it a key of the same "
        "mapping; or, to nest it, leave the value of the key above empty"
    )
    return (key, message, f"a key at column {column}", f"{key.content} at column {key.column}")


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _line_above(found: _Where) -> tuple[int, str] | None:
    """The nearest line above ``found`` with something on it besides a comment."""
    for number in range(found.line - 1, 0, -1):
        text = found.text_above[number - 1]
        if text.strip() and not text.strip().startswith("#"):
            return number, text
    return None


def _with_colon(text: str) -> str:
    """``- close stream`` -> ``- close: stream``: the first word as a key."""
    dash = "- " if text.startswith("- ") else ""
    word, _, rest = text[len(dash) :].partition(" ")
    return f"{dash}{word}: {rest}" if rest else f"{dash}{word}:"


def _document_start(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    at = found or start
    assert at is not None
    if at.text.strip() in ("---", "...") or at.text.startswith("--- "):
        return _documents(match, context, found, start)
    first = next(
        (
            (number, line)
            for number, line in enumerate(at.text_above, 1)
            if line.strip() and not line.strip().startswith(("#", "%", "---"))
        ),
        (at.line, at.text),
    )
    column = _indent(first[1]) + 1
    if column > 1:
        top = _Where(first[0], column, first[1], at.text_above)
        message = (
            f"the file's first line is indented (column {column}), and line {at.line} is "
            "indented less: start every top-level key in the first column"
        )
        return (top, message, "a key at column 1", f"{top.content} at column {column}")
    message = f"this line is indented less than the top level of the file; {_INDENTATION}"
    return (at, message, "a key at column 1", f"{at.content} at column {at.column}")


def _block_scalar(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    at = found or start
    assert at is not None
    message = (
        "after '|' or '>' (a block of text) the line must end, or hold only '-', '+' or an "
        "indentation digit: the text goes on the lines below, indented; quote the value if "
        "the '|' or '>' is text"
    )
    return (at, message, "the end of the line after '|' or '>'", at.content)


def _no_colon(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    at = start or found
    assert at is not None
    message = (
        "this line has no ':' after its key: write 'key: value' (or start a list item with "
        "'- '); if it goes on the value above, indent it more than that value's key"
    )
    return (at, message, "'key: value' or '- item'", at.content)


def _character(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    assert found is not None
    char = match.group(1)
    if char in ("\\t", "\t"):
        message = "a tab: YAML indents with spaces only; replace the tab with spaces"
        return (found, message, "spaces", "a tab character")
    message = (
        f"'{char}' cannot start a value in YAML (it is reserved): quote the value "
        f"(chunk: '{char}...')"
    )
    return (found, message, "a value, quoted if it starts with a special character", f"'{char}'")


def _tab_indent(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    assert found is not None
    message = "a tab: YAML indents with spaces only; replace the tab with spaces"
    return (found, message, "spaces", "a tab character")


def _unclosed_quote(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    at = start or found
    assert at is not None
    quote = at.text[at.column - 1] if at.column - 1 < len(at.text) else '"'
    other = "'" if quote == '"' else '"'
    message = (
        f"this quote ({quote}) is never closed: close it at the end of the value; a value "
        f"that contains {quote} can be quoted with {other} instead"
    )
    return (at, message, f"a closing {quote}", f"{_found_end(match, found)}")


def _found_end(match: re.Match[str], found: _Where | None) -> str:
    if "separator" in match.group(0):
        return f"a '---' line at line {found.line}" if found else "a '---' line"
    return "the end of the file"


def _unclosed_flow(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    closing, token = match.group(1), match.group(2)
    opening = "[" if closing == "]" else "{"
    kind = "list" if closing == "]" else "mapping"
    if token == "<stream end>" or found is None:
        at = start or found
        assert at is not None
        message = (
            f"this '{opening}' is never closed: add '{closing}' where its {kind} ends, or "
            f"quote the value if the '{opening}' is part of its text"
        )
        return (at, message, f"'{closing}'", "the end of the file")
    if start is not None and found.line > start.line:
        # A bracket that spans lines is legal, but an error on a later line is nearly
        # always a bracket never closed on its own line.
        message = (
            f"this '{opening}' is not closed before line {found.line}: add '{closing}' where "
            f"its {kind} ends, or quote the value if the '{opening}' is part of its text"
        )
        return (
            start,
            message,
            f"'{closing}'",
            f"{_TOKENS.get(token, repr(token))} at line {found.line}",
        )
    what = _TOKENS.get(token, repr(token))
    message = (
        f"{what} inside a {kind} in '{opening}{closing}' (opened at line "
        f"{start.line if start else found.line}): separate its values with ',', and quote a "
        "value that contains ':', ',', '[' or '{'"
    )
    return (found, message, f"',' or '{closing}'", what)


def _no_content(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    at = found or start
    assert at is not None
    message = "a value is missing here, or starts with a character YAML reads specially: quote it"
    return (at, message, "a value", at.content)


def _documents(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    at = found or start
    assert at is not None
    message = (
        "a second YAML document ('---'): a file holds one scenario; remove the '---' line "
        "and what follows, or move it to a file of its own"
    )
    return (at, message, "one document", "'---'")


def _alias(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    at = found or start
    assert at is not None
    name = match.group(1)
    message = (
        f"*{name} names no anchor: define &{name} on a value before it (top-level 'x-' keys "
        f"are a place for anchors), or quote the value if '*{name}' is text"
    )
    return (at, message, f"an anchor &{name} above", f"*{name}")


def _escape(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    at = found or start
    assert at is not None
    message = (
        "an unknown escape in a double-quoted value: write \\\\ for a backslash, or quote "
        "the value with ' (where a backslash is just a backslash)"
    )
    return (at, message, 'an escape such as \\n, \\t, \\" or \\\\', f"\\{match.group(1)}")


def _tag(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    at = found or start
    assert at is not None
    tag = match.group(1).replace("tag:yaml.org,2002:", "!!")
    message = f"the YAML tag {tag} is not one replay reads: remove it, or quote the value"
    return (at, message, "a value without a tag", tag)


def _anchor_name(
    match: re.Match[str], context: str, found: _Where | None, start: _Where | None
) -> _Explained:
    at = start or found
    assert at is not None
    message = (
        "'&' and '*' start an anchor or an alias in YAML and need a name after them: quote "
        "the value if it is text"
    )
    return (at, message, "&name or *name", at.content)


_Explain = Callable[[re.Match[str], str, "_Where | None", "_Where | None"], _Explained]

_EXPLAINED: tuple[tuple[re.Pattern[str], _Explain], ...] = (
    (re.compile(r"expected <block end>, but found '(.*)'$"), _block_end),
    (re.compile(r"^mapping values are not allowed here"), _mapping_values),
    (re.compile(r"could not find expected ':'"), _no_colon),
    (re.compile(r"found character '(.*)' that cannot start any token"), _character),
    (re.compile(r"found a tab character"), _tab_indent),
    (re.compile(r"found unexpected (end of stream|document separator)"), _unclosed_quote),
    (re.compile(r"expected ',' or '([\]}])', but got '(.*)'$"), _unclosed_flow),
    (re.compile(r"did not find expected node content|expected the node content"), _no_content),
    (re.compile(r"but found another document"), _documents),
    (re.compile(r"expected '<document start>'"), _document_start),
    (re.compile(r"expected chomping or indentation indicators"), _block_scalar),
    (re.compile(r"found undefined alias '(.*)'"), _alias),
    (re.compile(r"found unknown escape character '(.*)'"), _escape),
    (re.compile(r"could not determine a constructor for the tag '(.*)'"), _tag),
    (re.compile(r"expected alphabetic or numeric character"), _anchor_name),
)
