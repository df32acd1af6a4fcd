"""The chart's Grafana dashboards: valid, well-formed, and querying only metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dashboard_lint import TARGET_LABELS, check_dashboard, check_expr, exported_metrics, parse, queries
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info

import oreal.metrics
import oreal.verifier.metrics
import oreal_operator.metrics

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "charts" / "oreal-operator" / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
MODULES = (oreal.metrics, oreal.verifier.metrics, oreal_operator.metrics)  # what the registry holds


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for panel in panels:
        out.append(panel)
        out += all_panels(panel.get("panels", []))
    return out


@pytest.fixture(scope="module")
def exported() -> dict[str, frozenset[str]]:
    assert all(module.__name__ for module in MODULES)
    return exported_metrics(REGISTRY)


def test_both_dashboards_ship() -> None:
    assert [p.name for p in DASHBOARDS] == ["oreal-operator.json", "oreal-run.json"]
    titles = [load(p)["title"] for p in DASHBOARDS]
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert titles == ["oreal operator", "oreal run"]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    board = load(path)
    assert 36 <= board["schemaVersion"] <= 41
    assert board["id"] is None  # Grafana assigns ids; a fixed one clashes on import
    panels = all_panels(board["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}: {ids}"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel.get("description"), f"panel {panel['title']!r} has no description"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_datasource_is_a_prometheus_variable(path: Path) -> None:
    board = load(path)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in all_panels(board["panels"]):
        if panel["type"] == "row":
            continue
        sources = [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]
        assert all(s == {"type": "prometheus", "uid": "${datasource}"} for s in sources), panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_variable_used_is_defined(path: Path) -> None:
    board = load(path)
    defined = {v["name"] for v in board["templating"]["list"]}
    for where, expr in queries(board):
        used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", expr)) - {"__rate_interval", "__interval", "__range"}
        assert used <= defined, f"{path.name} {where} uses undefined variables {used - defined}"


def test_run_dashboard_filters_by_run_and_namespace() -> None:
    board = load(DASHBOARD_DIR / "oreal-run.json")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for name in ("namespace", "run"):
        assert variables[name]["type"] == "query"
        assert variables[name]["query"]["query"].startswith("label_values(")
        assert variables[name]["query"]["query"].rstrip().endswith(f", {name})")
    for where, expr in queries(board):
        if where.startswith("panel"):
            assert 'run=~"$run"' in expr and 'namespace=~"$namespace"' in expr, where


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_reads_exported_metrics_and_labels(
    path: Path, exported: dict[str, frozenset[str]]
) -> None:
    assert check_dashboard(load(path), exported) == []


def read_metrics(board: dict) -> set[str]:
    return {
        s.metric
        for _, expr in queries(board)
        for s in parse(re.sub(r"^label_values\(|, \w+\)$", "", expr)).selectors
    }


# Grafana units of a per-second rate (ops/s, requests/s, reads/s, writes/s, bytes/s, bits/s).
RATE_UNITS = {"ops", "reqps", "rps", "wps", "Bps", "binBps", "bps", "binbps"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_rates_of_counters_are_shown_per_second(path: Path) -> None:
    """A panel plotting only rate() of counters shows a per-second unit, or says "/s" in its title:
    "short" under a title like "Timeouts" would read as a count."""
    checked = 0
    for panel in all_panels(load(path)["panels"]):
        exprs = [t["expr"] for t in panel.get("targets", [])]
        if not exprs or not all(
            re.fullmatch(r"sum( by \([\w, ]+\))? \(rate\(\w+_total[{\[].*", e) for e in exprs
        ):
            continue
        unit = panel["fieldConfig"]["defaults"]["unit"]
        assert unit in RATE_UNITS or "/s" in panel["title"], (
            f"{path.name}: {panel['title']!r} has unit {unit}"
        )
        checked += 1
    assert checked  # each dashboard plots rates of counters


def test_dashboards_show_what_the_plan_asks(exported: dict[str, frozenset[str]]) -> None:
    run = read_metrics(load(DASHBOARD_DIR / "oreal-run.json"))
    for family in (
        "oreal_trainer_pass_rate",
        "oreal_trainer_reward_mean",
        "oreal_trainer_loss",
        "oreal_trainer_kl",
        "oreal_trainer_reward_model_accuracy",
        "oreal_trainer_step",
        "oreal_trainer_logprob_mismatch",
        "oreal_trainer_importance_weight_bounded_ratio",
        "oreal_step_phase_duration_seconds_bucket",
        "oreal_rollout_generated_tokens_total",
        "oreal_rollout_samples_total",
        "oreal_rollout_policy_staleness",
        "oreal_verifier_verdicts_total",
        "oreal_verifier_check_duration_seconds_bucket",
        "oreal_bucket_bytes_written_total",
        "oreal_bucket_bytes_read_total",
        "oreal_bucket_operation_duration_seconds_bucket",
        "oreal_policy_sync_duration_seconds_bucket",
    ):
        assert family in run, family
    operator = read_metrics(load(DASHBOARD_DIR / "oreal-operator.json"))
    assert {
        "oreal_runs",
        "oreal_operator_reconcile_duration_seconds_bucket",
        "oreal_operator_reconcile_errors_total",
    } <= operator


# -- the checker itself ------------------------------------------------------------------------------


def test_exported_metrics_maps_each_type_to_its_series() -> None:
    registry = CollectorRegistry()
    Counter("demo_requests", "c", ["code"], registry=registry)
    Histogram("demo_latency_seconds", "h", ["op"], registry=registry)
    Gauge("demo_temperature_celsius", "g", registry=registry)
    Info("demo_build", "i", registry=registry).info({"version": "1"})
    exported = exported_metrics(registry)
    assert set(exported) == {
        "demo_requests_total",
        "demo_latency_seconds_bucket",
        "demo_latency_seconds_sum",
        "demo_latency_seconds_count",
        "demo_temperature_celsius",
        "demo_build_info",
    }
    assert exported["demo_requests_total"] == {"code"}
    assert exported["demo_latency_seconds_bucket"] == {"op", "le"}
    assert exported["demo_latency_seconds_sum"] == {"op"}
    assert exported["demo_build_info"] == {"version"}


def test_parse_finds_selectors_and_grouping_labels() -> None:
    parsed = parse(
        'histogram_quantile(0.95, sum by (le, role) (rate(a_bucket{x="1", y=~"$v"}[$__rate_interval])))'
        " / on (role) group_left (z) b > bool 0.5"
    )
    assert [(s.metric, s.labels) for s in parsed.selectors] == [("a_bucket", ["x", "y"]), ("b", [])]
    assert parsed.grouping == ["le", "role", "role", "z"]
    assert [
        s.metric for s in parse('sum(rate(c_total[5m])) by (code) or {__name__="d", k="v"}').selectors
    ] == [
        "c_total",
        "d",
    ]


def board_with(expr: str, variable_query: str = "label_values(oreal_runs, namespace)") -> dict:
    return {
        "panels": [{"id": 1, "type": "timeseries", "title": "t", "targets": [{"expr": expr, "refId": "A"}]}],
        "templating": {"list": [{"name": "namespace", "type": "query", "query": {"query": variable_query}}]},
    }


def test_checker_accepts_a_correct_dashboard(exported: dict[str, frozenset[str]]) -> None:
    good = (
        'sum by (handler, kind, namespace) (rate(oreal_operator_reconcile_errors_total{handler="apply"}[5m]))'
    )
    assert check_dashboard(board_with(good), exported) == []


@pytest.mark.parametrize(
    ("expr", "variable_query", "complaint"),
    [
        # a gauge read as a counter
        (
            "rate(oreal_trainer_loss_total[5m])",
            "label_values(oreal_runs, phase)",
            "'oreal_trainer_loss_total' is not exported",
        ),
        # a histogram read without its _bucket suffix
        (
            "histogram_quantile(0.9, sum by (le) (rate(oreal_policy_sync_duration_seconds[5m])))",
            "label_values(oreal_runs, phase)",
            "is not exported",
        ),
        # a typo in a metric name
        ("sum(oreal_run{phase='Running'})", "label_values(oreal_runs, phase)", "'oreal_run' is not exported"),
        # a matcher on a label the metric lacks
        ('oreal_trainer_loss{phase="train"}', "label_values(oreal_runs, phase)", "has no label 'phase'"),
        # grouping by a label no metric of the expression has
        ("sum by (handler) (oreal_runs)", "label_values(oreal_runs, phase)", "label 'handler' it groups by"),
        # a variable reading a metric that does not exist
        ("oreal_runs", "label_values(oreal_runz, namespace)", "'oreal_runz' is not exported"),
        # a variable reading a label the metric lacks
        ("oreal_runs", "label_values(oreal_trainer_loss, phase)", "reads label 'phase'"),
    ],
)
def test_checker_catches_wrong_names(
    expr: str, variable_query: str, complaint: str, exported: dict[str, frozenset[str]]
) -> None:
    problems = check_dashboard(board_with(expr, variable_query), exported)
    assert any(complaint in p for p in problems), problems


def test_target_labels_are_the_chart_monitors_labels(exported: dict[str, frozenset[str]]) -> None:
    assert {"run", "namespace", "role"} <= TARGET_LABELS
    assert check_expr('oreal_trainer_step{run="x", role="trainer", pod=~".+-0"}', exported) == []
