"""Just enough PromQL reading to list the metrics an expression selects, with the label names it matches on.

Not a parser: strings are blanked, then ``name{matchers}`` selectors are read, then grouping clauses, ranges,
durations and numbers are dropped, and every identifier left that is not a function call or a keyword is a bare
selector.
That covers the expressions of deploy/ (aggregations, binary operators, histogram_quantile, Grafana variables).
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_DURATION = re.compile(r"(?<![a-zA-Z0-9_:])(?:\d+(?:ms|[smhdwy]))+(?![a-zA-Z0-9_:])")  # offset 5m, @ 1h30m
_NUMBER = re.compile(r"(?<![a-zA-Z0-9_:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\s*(\()?)")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring",
                       "group_left", "group_right"})


def selectors(expr: str) -> list[tuple[str, frozenset[str]]]:
    """``(metric name, label names of its matchers)`` for every metric ``expr`` selects."""
    text = _STRING.sub('""', expr)
    found: list[tuple[str, frozenset[str]]] = []

    def take(match: re.Match[str]) -> str:
        name, matchers = match.group(1), match.group(2)
        labels = frozenset(_MATCHER_LABEL.findall(matchers))
        if name is None:  # {__name__="x", ...}
            return " 0 "
        found.append((name, labels))
        return " 0 "

    text = _SELECTOR.sub(take, text)
    text = _RANGE.sub(" ", _GROUPING.sub(" ", text))
    text = _NUMBER.sub(" ", _DURATION.sub(" ", text))
    for match in _IDENT.finditer(text):
        if match.group(1) is None and match.group(0) not in _KEYWORDS:
            found.append((match.group(0), frozenset()))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects."""
    return {name for name, _ in selectors(expr)}
