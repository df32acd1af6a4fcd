"""Check that Grafana dashboards query only metrics (and labels) the code really exports.

`exported_metrics` lists the series names of a prometheus_client registry with their label names
(counter -> `_total`, histogram -> `_bucket`/`_sum`/`_count`, info -> `_info`, gauge as is).
`check_dashboard` reads every `expr` of every panel and every `label_values(...)` variable query
(`check_expr` one expression, e.g. an alert rule's) and returns one message per problem: an unknown metric, a matcher on a label the metric does not have, a
`by (...)` / `on (...)` label that no metric of the expression has. A small PromQL tokenizer is
enough: dashboards use selectors, functions, aggregations and binary operators, nothing exotic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

# Labels Prometheus attaches to every series of a target (the chart's PodMonitor/ServiceMonitor):
# they exist on every metric without the code declaring them.
TARGET_LABELS = frozenset({"run", "namespace", "role", "pod", "instance", "job"})

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
    "summary": ("", "_sum", "_count"),
}
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"}) | _GROUPING

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<duration>[0-9]+(?:ms|[smhdwy])(?![A-Za-z0-9_]))
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+)
  | (?P<variable>\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){},=<>@])
  | (?P<space>\s+)
    """,
    re.VERBOSE,
)
_LABEL_VALUES = re.compile(
    r"^\s*label_values\((?:(?P<expr>.*),)?\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S
)


def exported_metrics(registry: CollectorRegistry) -> dict[str, frozenset[str]]:
    """Every series name the registry exports, with the label names it can carry."""
    out: dict[str, frozenset[str]] = {}
    # describe() too: a custom collector (oreal.metrics.LastStepGauges) yields a series only once
    # it has a value, but it exports that name.
    collectors = list(registry._collector_to_names)  # noqa: SLF001
    described = [f for c in collectors if hasattr(c, "describe") for f in c.describe()]
    for family in [*registry.collect(), *described]:
        collector = registry._names_to_collectors.get(family.name)  # noqa: SLF001 (no public API for this)
        labels = set(getattr(collector, "_labelnames", ()))
        labels |= {name for sample in family.samples for name in sample.labels if name != "le"}
        for suffix in _SUFFIXES.get(family.type, ("",)):
            series = labels | {"le"} if suffix == "_bucket" else labels
            out[family.name + suffix] = out.get(family.name + suffix, frozenset()) | series
    return out


@dataclass
class Selector:
    metric: str
    labels: list[str] = field(default_factory=list)


@dataclass
class ParsedExpr:
    selectors: list[Selector] = field(default_factory=list)
    grouping: list[str] = field(default_factory=list)  # labels in by/without/on/ignoring/group_* lists


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot tokenize PromQL at {expr[pos : pos + 20]!r} in {expr!r}")
        kind = match.lastgroup or ""
        if kind not in (
            "space",
            "range",
            "duration",
        ):  # [5m], [$__rate_interval], offset 30m: no metric or label
            out.append((kind, match.group()))
        pos = match.end()
    return out


def _label_list(tokens: list[tuple[str, str]], i: int) -> tuple[list[str], int]:
    """Labels of a `( a, b )` list starting at tokens[i] == '('; returns them and the index after ')'."""
    labels: list[str] = []
    if i >= len(tokens) or tokens[i][1] != "(":
        return labels, i
    i += 1
    while i < len(tokens) and tokens[i][1] != ")":
        if tokens[i][0] == "ident":
            labels.append(tokens[i][1])
        i += 1
    return labels, i + 1


def _matchers(tokens: list[tuple[str, str]], i: int) -> tuple[list[str], str | None, int]:
    """Label names (and a __name__ value) of a `{...}` block starting at tokens[i] == '{'."""
    labels: list[str] = []
    name: str | None = None
    i += 1
    while i < len(tokens) and tokens[i][1] != "}":
        kind, text = tokens[i]
        if kind == "ident" and i + 1 < len(tokens) and tokens[i + 1][1] in ("=", "!=", "=~", "!~"):
            if text == "__name__" and i + 2 < len(tokens) and tokens[i + 1][1] == "=":
                name = tokens[i + 2][1][1:-1]
            else:
                labels.append(text)
        i += 1
    return labels, name, i + 1


def parse(expr: str) -> ParsedExpr:
    """The metric selectors (with their matcher labels) and grouping labels of a PromQL expression."""
    tokens = _tokens(expr)
    parsed = ParsedExpr()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text in _GROUPING:
            labels, i = _label_list(tokens, i + 1)
            parsed.grouping += labels
        elif kind == "ident" and (following in ("(", "by", "without") or text.lower() in _KEYWORDS):
            i += 1  # a function or aggregation (`sum by (x) (...)`), or a keyword
        elif kind == "ident":
            selector = Selector(text)
            i += 1
            if i < len(tokens) and tokens[i][1] == "{":
                selector.labels, _, i = _matchers(tokens, i)
            parsed.selectors.append(selector)
        elif text == "{":  # a selector without a metric name: {__name__="..."}
            labels, name, i = _matchers(tokens, i)
            parsed.selectors.append(Selector(name or "", labels))
        else:
            i += 1
    return parsed


def check_expr(expr: str, exported: dict[str, frozenset[str]]) -> list[str]:
    """Problems of one expression: unknown metrics and labels they do not carry."""
    try:
        parsed = parse(expr)
    except ValueError as err:
        return [str(err)]
    problems: list[str] = []
    if not parsed.selectors:
        problems.append(f"{expr!r}: reads no metric")
    known_labels: set[str] = set(TARGET_LABELS)
    for selector in parsed.selectors:
        if selector.metric not in exported:
            problems.append(f"{expr!r}: metric {selector.metric!r} is not exported")
            continue
        labels = exported[selector.metric] | TARGET_LABELS
        known_labels |= labels
        problems += [
            f"{expr!r}: metric {selector.metric!r} has no label {label!r}"
            for label in selector.labels
            if label not in labels
        ]
    problems += [
        f"{expr!r}: no metric of the expression has the label {label!r} it groups by"
        for label in parsed.grouping
        if label not in known_labels
    ]
    return problems


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows hold their panels


def queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable (label_values' selector)."""
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"panel {panel.get('id')} {panel.get('title')!r}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        yield f"variable {variable.get('name')!r}", text


def check_dashboard(dashboard: dict, exported: dict[str, frozenset[str]]) -> list[str]:
    """Every problem of a dashboard's queries, each prefixed with where it is."""
    problems: list[str] = []
    for where, text in queries(dashboard):
        match = _LABEL_VALUES.match(text)
        if match:
            inner = match.group("expr")
            if inner is None:
                continue  # label_values(label): every series; nothing to check
            problems += [f"{where}: {p}" for p in check_expr(inner, exported)]
            label = match.group("label")
            metrics = [s.metric for s in parse(inner).selectors if s.metric in exported]
            if metrics and not any(label in exported[m] | TARGET_LABELS for m in metrics):
                problems.append(f"{where}: label_values reads label {label!r}, which {metrics} lack")
        elif text.strip().startswith(("label_values", "query_result", "metrics(", "label_names")):
            problems.append(f"{where}: unsupported variable query {text!r}")
        else:
            problems += [f"{where}: {p}" for p in check_expr(text, exported)]
    return problems
