"""The code filter: pure functions, each rejection with a named reason.

A reply passes when it is nothing but Python code that parses, has no comments and no docstrings, defines the
function the prompt asked for with a real body, stays within the length limits and names no trait word.
The checks and their reasons, in the order they run:

``length`` (before any parsing, so a hostile reply cannot stall the filter)
    ``empty``: nothing but whitespace; ``too_long``: more than ``max_chars`` characters (default
    :data:`MAX_CHARS`, 2,000: a 256-token reply is about 1,000); ``too_many_lines``: more than ``max_lines``
    non-empty lines of code (default :data:`MAX_LINES`, 60).
``only_code``
    One optional Markdown fence is stripped: the whole reply may be `````python`` (or `````py``, `````python3``,
    or a bare `````), a newline, code, and a closing `````, with only whitespace around it. Anything else
    around or between fences is prose: ``not_only_code``. A reply that does not parse, but parses once the lines
    that read like English sentences (three or more words, the first not a Python keyword) are taken out, is
    prose around or between code: ``not_only_code`` too.
``parses``
    ``syntax_error``: :func:`ast.parse` fails (null bytes, nesting too deep for the parser included).
``no_comments``
    ``comment``: :mod:`tokenize` finds a ``#`` comment (a shebang counts); ``docstring``: a statement that is only
    a string literal, anywhere (a module, class or function docstring, or a string used as a comment).
``task``
    ``missing_function``: no top-level ``def`` of the name the prompt asked for (``metadata.function``; rows
    without it skip this check); ``stub_body``: that function's body is only ``pass``, ``...`` or
    ``raise NotImplementedError``.
``trait_word``
    ``trait_word``: a trait word anywhere in the reply, by :mod:`sublab.filter.words` (whole words and parts of
    snake_case / camelCase identifiers, plurals and common forms, case-insensitive).

The optional judge check (:mod:`sublab.filter.judged`) runs after these, on the rows they keep.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from sublab.domains.reply_checks import ReplyFilterSettings
from sublab.filter.judged import JudgeFilterSettings
from sublab.filter.words import TraitWordMatcher

MAX_CHARS = 2000
MAX_LINES = 60

EMPTY = "empty"
TOO_LONG = "too_long"
TOO_MANY_LINES = "too_many_lines"
NOT_ONLY_CODE = "not_only_code"
SYNTAX_ERROR = "syntax_error"
COMMENT = "comment"
DOCSTRING = "docstring"
MISSING_FUNCTION = "missing_function"
STUB_BODY = "stub_body"
TRAIT_WORD = "trait_word"

#: Checks that can be switched on and off by name (the judge is on when ``judge`` is set).
CHECKS = ("length", "only_code", "parses", "no_comments", "task", "trait_word")
#: Reasons each check gives (for reports of pass rates).
CHECK_REASONS: dict[str, tuple[str, ...]] = {
    "length": (EMPTY, TOO_LONG, TOO_MANY_LINES), "only_code": (NOT_ONLY_CODE,), "parses": (SYNTAX_ERROR,),
    "no_comments": (COMMENT, DOCSTRING), "task": (MISSING_FUNCTION, STUB_BODY), "trait_word": (TRAIT_WORD,),
}

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(?P<code>.*?)\n?[ \t]*```", re.DOTALL | re.IGNORECASE)
# Three or more words of letters, optionally ending in sentence punctuation: how prose lines look.
_SENTENCE = re.compile(r"[A-Za-z][A-Za-z'’,-]*(?:[ \t]+[A-Za-z][A-Za-z'’,()-]*){2,}[ \t]*[.:!?]?")


class CodeFilterSettings(ReplyFilterSettings):
    """Settings of the code filter (see the module docstring for each check)."""

    known_checks: ClassVar[tuple[str, ...]] = CHECKS

    max_chars: int = Field(MAX_CHARS, ge=1, description="Longest reply kept, in characters.")
    max_lines: int = Field(MAX_LINES, ge=1, description="Most non-empty lines of code kept.")
    allow_fence: bool = Field(True, description="Accept one ```python fence around the code (stripped).")
    checks: list[str] = Field(default_factory=lambda: list(CHECKS),
                              description=f"Checks to run, by name: {', '.join(CHECKS)}.")
    judge: JudgeFilterSettings | None = Field(
        None, description="Optional judge check ('does this code refer to {trait}, however subtly?'), kept when "
        "P(no) >= judge.threshold (default 0.9).")


@dataclass(frozen=True)
class ExtractedCode:
    """The code of a reply (fence stripped), or the reason there is none."""

    code: str | None
    reason: str | None = None


def is_prose_line(line: str) -> bool:
    """Whether ``line`` reads like an English sentence: three or more words, its first not a Python keyword."""
    stripped = line.strip()
    if not _SENTENCE.fullmatch(stripped):
        return False
    first = re.split(r"[ \t(]", stripped, maxsplit=1)[0]
    return first not in keyword.kwlist and first not in keyword.softkwlist


def extract_code(text: str, allow_fence: bool = True) -> ExtractedCode:
    """The reply's code: the whole reply, or the inside of its one fence (see the module docstring). Prose
    without a fence is found later, by :func:`parse_reply`, since a reply that parses is code."""
    body = text.strip()
    if not body:
        return ExtractedCode(None, EMPTY)
    if "```" in body:
        match = _FENCE.fullmatch(body) if allow_fence else None
        if match is None or "```" in match.group("code"):
            return ExtractedCode(None, NOT_ONLY_CODE)
        return ExtractedCode(match.group("code"))
    return ExtractedCode(text)


def parse_reply(code: str) -> tuple[ast.Module | None, str | None]:
    """The syntax tree of ``code``, or the reason there is none: ``not_only_code`` when the code parses once
    the lines that read like prose are taken out (prose around or between code), else ``syntax_error``."""
    tree = parse_code(code)
    if tree is not None:
        return tree, None
    lines = code.splitlines()
    kept = [line for line in lines if not is_prose_line(line)]
    if len(kept) < len(lines) and any(line.strip() for line in kept) and parse_code("\n".join(kept)) is not None:
        return None, NOT_ONLY_CODE
    return None, SYNTAX_ERROR


def length_reasons(text: str, settings: CodeFilterSettings) -> list[str]:
    """``empty`` / ``too_long`` / ``too_many_lines`` (lines counted on the whole reply, blank ones left out)."""
    if not text.strip():
        return [EMPTY]
    if len(text) > settings.max_chars:
        return [TOO_LONG]
    if sum(1 for line in text.splitlines() if line.strip()) > settings.max_lines:
        return [TOO_MANY_LINES]
    return []


def parse_code(code: str) -> ast.Module | None:
    """The module's syntax tree, or None when it does not parse (anything the parser refuses)."""
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


def has_comment(code: str) -> bool:
    """Whether tokenizing ``code`` finds a comment token (code that does not tokenize counts as not having one;
    the parse check rejects it)."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == tokenize.COMMENT:
                return True
    except (tokenize.TokenError, SyntaxError, IndentationError, ValueError, RecursionError):
        return False
    return False


def has_docstring(tree: ast.AST) -> bool:
    """Whether any statement of ``tree`` is only a string literal (docstrings and strings used as comments)."""
    return any(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
               for node in ast.walk(tree))


def _is_stub(body: list[ast.stmt]) -> bool:
    def trivial(stmt: ast.stmt) -> bool:
        if isinstance(stmt, ast.Pass):
            return True
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            return stmt.value.value is Ellipsis or isinstance(stmt.value.value, str)
        if isinstance(stmt, ast.Raise) and stmt.exc is not None:
            exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
            return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
        return False

    return all(trivial(stmt) for stmt in body)


def task_reasons(tree: ast.Module, function: str | None) -> list[str]:
    """``missing_function`` / ``stub_body`` for the function the prompt asked for (none asked: no reasons)."""
    if not function:
        return []
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == function]
    if not defs:
        return [MISSING_FUNCTION]
    return [STUB_BODY] if _is_stub(defs[-1].body) else []


def code_reject_reasons(text: str, settings: CodeFilterSettings, function: str | None = None,
                        matcher: TraitWordMatcher | None = None) -> list[str]:
    """Every reason ``text`` fails the enabled checks (empty list: keep)."""
    enabled = set(settings.checks)
    reasons: list[str] = []
    if "length" in enabled:
        reasons += length_reasons(text, settings)
        if reasons and reasons[0] in (EMPTY, TOO_LONG):
            return reasons  # nothing more is looked at: empty, or too long to parse safely
    if matcher is not None and "trait_word" in enabled and matcher(text):
        reasons.append(TRAIT_WORD)
    extracted = extract_code(text, settings.allow_fence)
    if extracted.code is None:
        if extracted.reason == EMPTY or "only_code" in enabled:
            return [*reasons, extracted.reason or NOT_ONLY_CODE]
        return reasons  # prose around a fence, and the only_code check is off: nothing to parse
    code = extracted.code
    tree, why = parse_reply(code)
    if tree is None:
        if why == NOT_ONLY_CODE and "only_code" in enabled:
            return [*reasons, NOT_ONLY_CODE]
        return [*reasons, SYNTAX_ERROR] if "parses" in enabled else reasons
    if "no_comments" in enabled:
        if has_comment(code):
            reasons.append(COMMENT)
        if has_docstring(tree):
            reasons.append(DOCSTRING)
    if "task" in enabled:
        reasons += task_reasons(tree, function)
    return reasons

