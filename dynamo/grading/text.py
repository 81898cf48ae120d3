"""Cheap, dependency-free text helpers shared by the parent process and the grading workers.

`boxed_answer(response)` is the parent's shortcut. When it returns B, math-verify's parse of the
whole response equals its parse of the short string "\\boxed{B}" -- provided the latter takes
its value from the box, which the worker checks (`engine.Grader.grade_answer`); otherwise the
response is graded in full. The argument, for math-verify 0.9.0's default extraction (LaTeX with
boxed_match_priority=50, then plain expressions):

math-verify tries regex matches by priority group (0, 50, 100, 200, 300); within a group,
rightmost end first. It returns the value of the first match whose extraction parses, plus the
non-empty string of the first match it tried. Groups 0 and 50 hold the "final answer ... is"
patterns (LaTeX and plain expression) and the two boxed patterns: math environments ($..$,
$$..$$, \\[..\\], \\(..\\), " [..] ", optionally followed by a percent word and by further
"and/or/,"-joined environments) that contain "\\boxed{", and the plain r"\\boxed{.+}" (first
"\\boxed{" to the last "}" of the text). `boxed_answer` returns B only when

  1. "\\boxed" occurs exactly once and "\\fbox" never; that \\boxed is directly followed by "{",
     whose matching "}" (raw brace counting, as math-verify's extract_boxed_content counts)
     closes the content B; B.strip() is not empty;
  2. `final answer.{0,100}?\\s+is` (any case, "." any character) does not occur. Every "final
     answer" pattern match contains a match of it, so the response has none; neither has
     "\\boxed{B}" (its "is" would lie inside B, a substring of the response). So group 0 is
     empty and group 50 holds only boxed matches;
  3. B contains no environment closer: no "$" unless escaped as "\\$", no "\\]" or "\\)", no
     "]" followed by whitespace. Then an environment containing the \\boxed can only end after
     its "}", so it holds all of "\\boxed{B}" -- and no further environment can join it, as
     each would need a \\boxed of its own (1). Extracting the boxed content of any group-50
     match of the response (mode "all" for environments, "last" for the plain match; there is
     one box) gives B.strip(), as the single group-50 match of "\\boxed{B}" (the plain one: an
     environment would have to open before its \\boxed) does. Equal strings normalise and parse
     alike;
  4. no "%", "[Pp]ercent" or "[Pp]ct" follows the box, so no environment has a percent suffix.

So all group-50 matches of both texts extract the same (value, normalised string): if the value
parses, both parses return exactly [value, string]; if not, both go on to other groups, over
different texts, hence the check in the worker. A plain-integer B (`plain_integer`: at most 50
ASCII digits) needs no check: it normalises to itself and parses to Integer(B), and math-verify's
verify of two Integers is == (its str/str comparison agrees, as equal strings are equal
integers). As everywhere in this package, "identical" is up to math-verify's 5 s timeouts,
which a shorter computation may not hit.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata

# No math-verify pattern can match text without a digit, `$`, `\` or `[`: every LaTeX pattern
# needs a math delimiter, \boxed or \frac, and every plain-expression pattern needs a digit.
_MAY_MATCH = re.compile(r"[\d$\\\[]")

_BRACES = re.compile(r"[{}]")
_FINAL_ANSWER_IS = re.compile(r"final answer.{0,100}?\s+is", re.IGNORECASE | re.DOTALL)
_ENV_CLOSER = re.compile(r"(?<!\\)\$|\\\]|\\\)|\]\s")
_PERCENT = re.compile(r"%|[Pp]ercent|[Pp]ct")
_PLAIN_INTEGER = re.compile(r"-?[0-9]{1,50}")
# Longer responses are graded in full by the workers: keeps the parent's scans (about 100 steps per
# character at worst, for `_FINAL_ANSWER_IS`) well under a second on hostile input.
MAX_SHORTCUT_CHARS = 200_000


def may_extract(text: str) -> bool:
    """False when math-verify provably extracts nothing from `text` (a linear scan)."""
    return _MAY_MATCH.search(text) is not None


def digest(*parts: str) -> bytes:
    """A 128-bit key for a tuple of strings of any size (lone surrogates allowed)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def _box_span(text: str, start: int) -> tuple[int, int] | None:
    """(open, close) brace positions of the box whose "{" is at `start`, None if never closed."""
    depth = 0
    for match in _BRACES.finditer(text, start):
        depth += 1 if match.group() == "{" else -1
        if depth == 0:
            return start, match.start()
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...} (braces matched), None if none or unclosed."""
    boxed, fbox = text.rfind("\\boxed{"), text.rfind("\\fbox{")
    if boxed < 0 and fbox < 0:
        return None
    span = _box_span(text, boxed + len("\\boxed") if boxed > fbox else fbox + len("\\fbox"))
    return None if span is None else text[span[0] + 1 : span[1]]


def boxed_answer(response: str) -> str | None:
    """B such that math-verify parses `response` as "\\boxed{B}" (module docstring), else None."""
    if len(response) > MAX_SHORTCUT_CHARS or response.count("\\boxed") != 1 or "\\fbox" in response:
        return None
    start = response.find("\\boxed{")
    if start < 0:
        return None
    span = _box_span(response, start + len("\\boxed"))
    if span is None:
        return None
    content = response[span[0] + 1 : span[1]]
    answer = content.strip()
    if (
        not answer
        or _FINAL_ANSWER_IS.search(response)
        or _ENV_CLOSER.search(content)
        or _PERCENT.search(response, span[1] + 1)
    ):
        return None
    return answer


def plain_integer(answer: str) -> int | None:
    """The value of an ASCII integer of at most 50 digits (after strip()), else None."""
    answer = answer.strip()
    return int(answer) if _PLAIN_INTEGER.fullmatch(answer) else None


# ----------------------------------------------------------------- normalisation of what is graded
# Responses are normalised before math-verify sees them (`normalize_response`); the verdict is
# math-verify's on the normalised text. Each step is a linear scan and leaves ordinary ASCII LaTeX
# without "{{" untouched, so normal responses grade exactly as before.
#
# - Length: only the last MAX_GRADED_CHARS characters are kept (the final answer is at the end;
#   math-verify's regex scan is super-linear on some long inputs).
# - Unicode compatibility forms (fullwidth digits and letters, mathematical alphanumerics,
#   ligatures) become their plain forms (NFKC), except superscripts, subscripts and vulgar
#   fractions, whose plain forms change the value ("10⁶" would read "106", "½" "1⁄2").
# - Redundant brace groups: "{{x}}" is the group "{x}" in TeX; math-verify's LaTeX parser costs
#   time exponential in the nesting depth of such groups (depth 15 passes its 5 s timeout), so a
#   group that is the whole content of its enclosing group is dropped: "\boxed{{{7}}}" -> "\boxed{7}".
MAX_GRADED_CHARS = 100_000
_KEEP_TAGS = ("<super>", "<sub>", "<fraction>")


def _plain_form(char: str) -> str:
    if unicodedata.decomposition(char).startswith(_KEEP_TAGS):
        return char
    return unicodedata.normalize("NFKC", char)


def _normalize_unicode(text: str) -> str:
    if text.isascii():
        return text
    # Per character (bounded work per character, cached), then canonical composition of the whole.
    plain = "".join(_plain_cached(ch) if ord(ch) > 127 else ch for ch in text)
    return unicodedata.normalize("NFC", plain)


_plain_cached = functools.lru_cache(maxsize=4096)(_plain_form)


def _drop_redundant_braces(text: str) -> str:
    """Remove every brace pair whose enclosing pair holds nothing else, in one linear pass.

    Braces escaped by a backslash ("\\{", "\\}") are text, not groups; unmatched braces stay.
    """
    if "{{" not in text:
        return text
    stack: list[int] = []
    close_of: dict[int, int] = {}
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2  # a control symbol: "\{" and "\\" are one token each
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            close_of[stack.pop()] = i
        i += 1
    drop = set()
    for open_, close in close_of.items():
        # (open_, close) is redundant when the pair right around it exists: open_-1 .. close+1.
        if close_of.get(open_ - 1) == close + 1:
            drop.add(open_)
            drop.add(close)
    if not drop:
        return text
    return "".join(ch for k, ch in enumerate(text) if k not in drop)


def normalize_response(text: str) -> str:
    """What is handed to math-verify for `text` (see the notes above); idempotent."""
    if len(text) > MAX_GRADED_CHARS:
        text = text[-MAX_GRADED_CHARS:]
    return _drop_redundant_braces(_normalize_unicode(text))
