"""The grading computation itself: math-verify, with caches that cannot change a verdict.

This module imports math-verify (sympy, antlr) and runs *untrusted* text through regexes and
a LaTeX parser. It is meant to run inside the grading worker processes (`dynamo.grading.pool`),
where a hung computation can be killed; the parent process never imports it. Tests and the
benchmark import it directly to compare against a plain math-verify call.

Reference semantics (what "correct" means), for a response r and a gold answer g:

    math_verify.verify(math_verify.parse("\\boxed{" + N(g) + "}"), math_verify.parse(N(r)))

where N is `text.normalize_response` (length cap, Unicode compatibility forms, redundant braces),
with math-verify's default extraction (LaTeX + plain expressions) for both sides; several
gold answers: correct if any of them is. `reference_grade` below is exactly that call.

`Grader` returns the same verdicts faster:
- extraction mirrors `math_verify.parser.extract_target_from_pred` and `extract_latex`
  (pinned math-verify 0.9.0) step by step. Every response is still scanned by every regex in
  the same priority order, so *which match wins* is decided exactly as in math-verify; what is
  memoised is the work after the scan: a match's extraction (keyed by its non-empty named
  groups, the only input math-verify reads) and the LaTeX -> sympy parse (keyed by the
  normalised LaTeX string, so "answer is $\\boxed{x}$", "\\boxed{x}." and the boxed gold x share
  one parse).
- an extracted prediction is identified by (normalised LaTeX it was parsed from, first
  fallback string) -- exactly what determines parse()'s return value -- and each
  (gold, prediction) pair is verified once and cached.
- two exact shortcuts replace sympy where the outcome of `verify` is provable:
  identical normalised strings (its str/str comparison returns True), and pairs of plain
  sympy rationals (verify reduces to ==, see `_verify_items`).
Everything else calls math-verify's own `verify` on the same objects. `grade_answer` grades a
response by its boxed answer alone, where `dynamo.grading.text` proves that equivalent; it
checks the one condition that needs the parser (the box parses). The only difference from
the reference is timing: a memoised extraction is faster, so a response that makes the
reference hit its 5 s parse timeout may not time out here.
"""

from __future__ import annotations

import itertools
import math
import re
import signal
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from latex2sympy2_extended.latex2sympy2 import convert_to_pct, normalize_latex
from latex2sympy2_extended.sets import FiniteSet
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException
from math_verify.parser import extract_match, get_extraction_regexes, parse_latex_cached
from math_verify.utils import timeout as mv_timeout
from sympy import Rational

from dynamo.grading.text import may_extract, normalize_response

# math-verify's own defaults for parse() and verify(), kept so verdicts match the reference.
SOFT_TIMEOUT_S = 5
BOXED_PRIORITY = LatexExtractionConfig().boxed_match_priority  # 50: the \\boxed patterns' group


def boxed(gold: str) -> str:
    """The gold answer as the reference wraps it."""
    return "\\boxed{" + gold + "}"


def reference_grade(response: str, gold: str | list[str]) -> bool:
    """Plain, uncached math-verify verdict (the definition the fast grader must reproduce).

    Runs in the calling process with math-verify's signal-based timeouts, so only call it from
    a main thread, and never on untrusted text outside a killable process.
    """
    golds = [gold] if isinstance(gold, str) else list(gold)
    pred = parse(normalize_response(response))
    return any(verify(parse(boxed(normalize_response(g))), pred) for g in golds)


# Generic answer shapes (not benchmark data) graded once when a worker starts: the first parse of
# each LaTeX construct builds ANTLR's prediction DFA and is 10-100x slower than later ones.
WARMUP_ANSWERS = (
    "42",
    "-7",
    "0.35",
    "3.5\\%",
    "10^{6}",
    "2^{10} - 1",
    "1{,}000",
    "\\frac{3}{4}",
    "-\\dfrac{7}{2}",
    "3/8",
    "\\sqrt{2}",
    "2\\sqrt{3}",
    "\\frac{\\sqrt{5} - 1}{2}",
    "\\sqrt[3]{2}",
    "\\pi",
    "\\frac{\\pi}{6}",
    "2\\pi r^2",
    "(1, 2)",
    "(-\\frac{1}{2}, 3)",
    "\\left( 3, \\frac{\\pi}{2} \\right)",
    "[0, 1]",
    "(-\\infty, 2]",
    "[3, \\infty)",
    "(-2, 1) \\cup (3, \\infty)",
    "\\{1, 2, 3\\}",
    "1, 2, 3",
    "x = 5",
    "y = 2x + 3",
    "x \\in [-2, 7]",
    "a < 3",
    "x^2 - 5x + 6",
    "(a+5)(b+2)",
    "\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}",
    "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
    "90^\\circ",
    "6 - 5i",
    "\\text{Evelyn}",
    "\\text{(C)}",
    "4210_{5}",
    "\\log_2 3",
    "\\sin x",
    "e^{2}",
    "5!",
    "\\binom{5}{2}",
    "\\pm 3",
    "3 \\times 10^{8}",
    "12\\text{ cm}",
    "\\$18.90",
)


class LRU:
    """A small least-recently-used map (bounded memory for long-running workers)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class Extraction:
    """What `parse` would return (`items`), a key identifying it, and a display string."""

    items: tuple[Any, ...]
    key: tuple[Any, ...] | None  # None when nothing was extracted
    text: str | None
    failure: str | None = None  # "timeout" | "error" when extraction was cut short
    priority: int | None = None  # priority group of the match the value came from


_EMPTY = Extraction(items=(), key=None, text=None)

# One regex match's extraction: (parsed value or None, normalised string, key of the value).
Hit = tuple[Any, str, Any]


class Grader:
    """math-verify grading with memoised extraction and verification (one per worker process)."""

    def __init__(self, soft_timeout: float | None = SOFT_TIMEOUT_S, cache_size: int = 50_000) -> None:
        # One time budget per graded response (parse + verify together), math-verify's 5 s by
        # default: math-verify's own bound applies per phase, so one response could take 2 x 5 s.
        self.soft_timeout = soft_timeout
        self._in_budget = False
        self.targets = (LatexExtractionConfig(), ExprExtractionConfig())
        # Same pattern list and priority grouping as math_verify.parser.extract_target_from_pred.
        all_patterns = [
            (pattern, target_index, priority)
            for target_index, (target_patterns, _) in enumerate(get_extraction_regexes(self.targets))
            for pattern, priority in target_patterns
        ]
        ordered = sorted(all_patterns, key=lambda x: x[2])
        self._groups = [list(g) for _, g in itertools.groupby(ordered, key=lambda x: x[2])]
        self._matches = LRU(cache_size)  # regex match -> Hit
        self._parsed = LRU(cache_size)  # (normalised LaTeX, percent) -> (sympy value or None,)
        self._golds = LRU(cache_size)  # gold string -> Extraction
        self._verdicts = LRU(4 * cache_size)  # (gold key, prediction key) -> bool

    # ----------------------------------------------------------------- extraction
    def _parse_latex(self, normalized: str, percent: bool) -> Any:
        """parse_latex_cached(normalized) [+ convert_to_pct], None on error -- memoised."""
        key = (normalized, percent)
        hit = self._parsed.get(key)
        if hit is None:
            try:
                value = parse_latex_cached(normalized)
                if percent:
                    value = convert_to_pct(value)
            except TimeoutException:
                raise  # the response's time budget ran out: not a failed parse, and not cached
            except Exception:
                value = None
            hit = (value,)  # boxed so that a failed parse (None) is cached too
            self._parsed.put(key, hit)
        return hit[0]

    def _extract_latex(self, groups: dict[str, str | None], config: LatexExtractionConfig) -> Hit:
        """Mirror of math_verify.parser.extract_latex, plus a key naming the parsed value.

        The key is the list of (normalised LaTeX, percent) the value was parsed from, so the same
        answer written in different surroundings ("answer is $\\boxed{x}$", "\\boxed{x}.") is
        parsed once and compared once.
        """
        first = next(((v, n) for n, v in groups.items() if n.startswith("first_latex") and v), None)
        nexts = [
            next(((v, n) for n, v in groups.items() if n.startswith(f"next{i}_latex") and v), None)
            for i in range(1, 6)
        ]
        exprs, strings, parts = [], [], []
        for latex, name in [g for g in [first, *nexts] if g is not None]:
            prefix = name.split("_")[0]
            group_name = name.split("_")[1] if len(name.split("_")) > 1 else None
            percent = bool(groups.get(f"{prefix}_percent"))
            norm_config = config.normalization_config
            if group_name == "latexBoxed":
                norm_config = replace(norm_config, boxed="last")
            normalized = normalize_latex(latex, config=norm_config)
            strings.append(normalized)
            parts.append((normalized, percent))
            exprs.append(self._parse_latex(normalized, percent))
        if not exprs:
            return None, "", None
        if len(exprs) > 1 and all(e is not None for e in exprs):
            elements: list[Any] = []
            for expr in exprs:
                elements.extend(expr.args if isinstance(expr, FiniteSet) else [expr])
            return FiniteSet(*elements), " and ".join(strings), ("latex", tuple(parts))
        return exprs[0], strings[0], ("latex", (parts[0],))

    def _extract_match(self, match: re.Match[str], target_index: int) -> Hit:
        """(parsed or None, normalised string, key of the parsed value) for one regex match."""
        groups = match.groupdict()
        # Both extractors read only the groups with truthy values, so these name the input fully.
        memo_key = (target_index, tuple((name, value) for name, value in groups.items() if value))
        hit = self._matches.get(memo_key)
        if hit is None:
            target = self.targets[target_index]
            if isinstance(target, LatexExtractionConfig):
                hit = self._extract_latex(groups, target)
            else:  # plain expressions: cheap, math-verify's own code; the match itself is the key
                parsed, string = extract_match(match, target)
                hit = (parsed, string, memo_key)
            self._matches.put(memo_key, hit)
        return hit

    def _scan(self, text: str) -> Extraction:
        """Mirror of extract_target_from_pred(fallback_mode="first_match", extraction_mode="any_match")."""
        fallbacks: list[str] = []
        for group in self._groups:
            priority = group[0][2]
            matches = ((m, m.start(), m.end(), ti) for pattern, ti, _ in group for m in pattern.finditer(text))
            for match, _, _, ti in sorted(matches, key=lambda x: (x[2], -x[1]), reverse=True):
                parsed, string, key = self._extract_match(match, ti)
                if string:
                    fallbacks.append(string)
                if parsed is not None:
                    first = fallbacks[0] if fallbacks else None
                    items = (parsed,) if first is None else (parsed, first)
                    return Extraction(items=items, key=(key, first), text=string or first, priority=priority)
        if fallbacks:
            return Extraction(items=(fallbacks[0],), key=(None, fallbacks[0]), text=fallbacks[0])
        return _EMPTY

    def extract(self, text: str) -> Extraction:
        """`parse(text)` as an Extraction; errors and timeouts give an empty one with `failure` set."""
        if not may_extract(text):
            return _EMPTY
        bounded = self.soft_timeout and not self._in_budget
        scan = mv_timeout(int(math.ceil(self.soft_timeout)))(self._scan) if bounded else self._scan
        try:
            return scan(text)
        except TimeoutException:
            if self._in_budget:
                raise  # ends the whole grade (see _within_budget)
            return Extraction(items=(), key=None, text=None, failure="timeout")
        except Exception:  # parse() returns [] on any error; we also count it
            return Extraction(items=(), key=None, text=None, failure="error")

    def gold(self, gold: str) -> Extraction:
        ex = self._golds.get(gold)
        if ex is None:
            ex = self.extract(boxed(gold))
            if ex.failure is None:
                self._golds.put(gold, ex)
        return ex

    # ----------------------------------------------------------------- verification
    def _verify_items(self, golds: tuple[Any, ...], preds: tuple[Any, ...]) -> tuple[bool, str | None]:
        """`verify(list(golds), list(preds))`, i.e. any pairwise comparison succeeds."""
        # verify() compares two strings by stripped equality and returns True for equal
        # non-empty ones; str/sympy pairs are always False.
        for g, t in itertools.product(golds, preds):
            if isinstance(g, str) and isinstance(t, str) and g.strip() and g.strip() == t.strip():
                return True, None
        sym_golds = [g for g in golds if not isinstance(g, str)]
        sym_preds = [t for t in preds if not isinstance(t, str)]
        # Two sympy rationals: sympy_expr_eq tries str-eq (a == b), then numeric eq (a == b for
        # non-floats), then simplify(a - b).is_zero -- all equivalent to a == b.
        if all(isinstance(x, Rational) for x in sym_golds + sym_preds):
            return any(g == t for g, t in itertools.product(sym_golds, sym_preds)), None
        failure = None
        per_call = None if self._in_budget or not self.soft_timeout else int(math.ceil(self.soft_timeout))
        for g, t in itertools.product(sym_golds, sym_preds):
            try:
                if verify(g, t, timeout_seconds=per_call, raise_on_error=True):
                    return True, None
            except TimeoutException:
                if self._in_budget:
                    raise
                failure = "timeout"
            except Exception:  # verify() would log and return False for this pair
                failure = "error"
        return False, failure

    def verify(self, gold: Extraction, pred: Extraction) -> tuple[bool, str | None]:
        if not gold.items or not pred.items:
            return False, None
        key = (gold.key, pred.key)
        cached = self._verdicts.get(key)
        if cached is not None:
            return cached, None
        verdict, failure = self._verify_items(gold.items, pred.items)
        if failure is None:
            self._verdicts.put(key, verdict)
        return verdict, failure

    # ----------------------------------------------------------------- public
    def grade(self, response: str, golds: tuple[str, ...]) -> tuple[bool, str | None, str | None]:
        """(correct, extracted answer, failure kind or None) for one response, within one time budget.

        Grades the text as given: callers hand over `text.normalize_response` of the response and
        golds (the parent does, in `dynamo.grading.grade_details`)."""
        return self._within_budget(lambda: self._grade(self.extract(response), golds))

    def _within_budget(self, work):
        """Run `work` with a single SIGALRM deadline of `soft_timeout` seconds for every phase
        (extraction, gold parse, verification); past it the grade is (False, None, "timeout").

        The timer repeats every 0.1 s after the deadline, so a TimeoutException (a BaseException)
        swallowed by a bare `except` deep in sympy cannot leave the grade unbounded. Needs the
        main thread (the grading workers); elsewhere, or with no budget, the per-phase bounds apply."""
        import threading

        if not self.soft_timeout or self._in_budget or threading.current_thread() is not threading.main_thread():
            return work()

        armed = [True]  # cleared before the timer is cancelled, so a late tick cannot escape

        def expire(signum, frame):
            if armed[0]:
                raise TimeoutException("grading time budget exceeded")

        previous = signal.signal(signal.SIGALRM, expire)
        self._in_budget = True
        signal.setitimer(signal.ITIMER_REAL, float(self.soft_timeout), 0.1)
        try:
            try:
                return work()
            finally:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        except TimeoutException:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            return False, None, "timeout"
        finally:
            signal.signal(signal.SIGALRM, previous)
            self._in_budget = False

    def grade_answer(self, answer: str, golds: tuple[str, ...]) -> tuple[bool, str | None, str | None] | None:
        """`grade` of a response whose `text.boxed_answer` is `answer`, or None: grade it in full.

        The response parses as "\\boxed{answer}" does when that parse takes its value from the
        box, i.e. from a match in the boxed priority group (see `dynamo.grading.text`); a box
        that does not parse (or a timeout) sends the caller back to the full response.
        """

        def work():
            pred = self.extract(boxed(answer))
            if pred.failure is not None or pred.priority != BOXED_PRIORITY:
                return None
            return self._grade(pred, golds)

        # A timeout here is final (False, None, "timeout"): the response has had its budget.
        return self._within_budget(work)

    def _grade(self, pred: Extraction, golds: tuple[str, ...]) -> tuple[bool, str | None, str | None]:
        failure = pred.failure
        for gold in golds:
            gold_ex = self.gold(gold)
            correct, verify_failure = self.verify(gold_ex, pred)
            if correct:
                return True, pred.text, None
            failure = failure or gold_ex.failure or verify_failure
        return False, pred.text, failure
