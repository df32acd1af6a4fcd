"""The chart's PrometheusRule: every alert reads only exported metrics, and every alert has a
`promtool test rules` case on synthetic series that shows it firing, and not firing when it must not.

promtool is Debian's (package prometheus; scripts/install_system_tools.sh installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboard_lint import check_expr, exported_metrics
from helm_chart import MONITORING_API, NAMESPACE, one, template
from prometheus_client import REGISTRY

import oreal.metrics
import oreal.verifier.metrics
import oreal_operator.leader
import oreal_operator.metrics

MODULES = (oreal.metrics, oreal.verifier.metrics, oreal_operator.metrics, oreal_operator.leader)
RULE_FLAGS = ("--set", "prometheusRule.enabled=true", "--api-versions", MONITORING_API)
RUN = {"namespace": "team-a", "run": "r1", "role": "trainer", "pod": "r1-trainer-0", "job": "team-a/runs"}


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def alert(labels: dict[str, str], **annotations: str) -> dict[str, Any]:
    return {"exp_labels": labels, "exp_annotations": annotations}


# alert -> (input series, [(eval time, expected alerts)]), with the chart's default thresholds.
R2 = {**RUN, "run": "r2", "pod": "r2-trainer-0"}
CASES: dict[str, tuple[list[dict[str, str]], list[tuple[str, list[dict[str, Any]]]]]] = {
    "OREALRunFailed": (
        [
            series("oreal_runs", {"namespace": "team-a", "phase": "Failed", "job": "op"}, "0 0 1 1 1"),
            series("oreal_runs", {"namespace": "team-a", "phase": "Running", "job": "op"}, "2 2 1 1 1"),
        ],
        [
            ("1m", []),
            (
                "3m",
                [
                    alert(
                        {"namespace": "team-a", "severity": "warning"},
                        summary="1 OREALRun(s) failed in namespace team-a",
                        description="kubectl get orealruns -n team-a: status.conditions of the Failed run say "
                        "why (BackoffLimitExceeded, DeadlineExceeded).",
                    )
                ],
            ),
        ],
    ),
    # r1 commits a step a minute for 20 minutes, then none; r2 starts at minute 40 and sits at step 0.
    "OREALRunNoProgress": (
        [
            series("oreal_trainer_step", RUN, "0+1x20 20x60"),
            series("oreal_trainer_step", R2, "_x40 0x40"),
        ],
        [
            ("45m", []),
            ("52m", []),  # 30 minutes without a step, pending for 5
            (
                "56m",
                [
                    alert(
                        {**RUN, "severity": "warning"},
                        summary="OREALRun team-a/r1 has committed no step for 30 minutes",
                        description="The trainer is at step 20. Look at the rollout and verifier pods and the "
                        "run's events.",
                    )
                ],
            ),
        ],
    ),
    "OREALTrainerLossNotFinite": (
        [
            series("oreal_trainer_loss", RUN, "0.5 0.4 NaN 0.3"),
            series("oreal_trainer_loss", R2, "1 1 1 Inf"),
        ],
        [
            ("1m", []),
            (
                "2m",
                [
                    alert(
                        {**RUN, "severity": "critical"},
                        summary="OREALRun team-a/r1: the trainer's loss is NaN",
                        description="The policy is diverging; suspend the run (spec.suspend: true) and resume "
                        "from a checkpoint with a lower learning rate.",
                    )
                ],
            ),
            (
                "3m",
                [
                    alert(
                        {**R2, "severity": "critical"},
                        summary="OREALRun team-a/r2: the trainer's loss is +Inf",
                        description="The policy is diverging; suspend the run (spec.suspend: true) and resume "
                        "from a checkpoint with a lower learning rate.",
                    )
                ],
            ),
        ],
    ),
    # r1: 1 timeout in 10 checks a minute (10%); r2: 1 in 100 (1%), under the 5% threshold.
    "OREALVerifierTimeoutRateHigh": (
        [
            series(
                "oreal_verifier_verdicts_total", {**RUN, "role": "verifier", "result": "timeout"}, "0+1x30"
            ),
            series(
                "oreal_verifier_verdicts_total", {**RUN, "role": "verifier", "result": "correct"}, "0+9x30"
            ),
            series(
                "oreal_verifier_verdicts_total", {**R2, "role": "verifier", "result": "timeout"}, "0+1x30"
            ),
            series(
                "oreal_verifier_verdicts_total", {**R2, "role": "verifier", "result": "incorrect"}, "0+99x30"
            ),
        ],
        [
            ("5m", []),  # pending for 10 minutes first
            (
                "15m",
                [
                    alert(
                        {"namespace": "team-a", "run": "r1", "severity": "warning"},
                        summary="OREALRun team-a/r1: 10% of the verifier's checks time out",
                        description="Timeouts count as wrong answers. Give the verifier more CPU "
                        "(spec.verifier.resources) or replicas.",
                    )
                ],
            ),
        ],
    ),
    "OREALOperatorReconcileErrors": (
        [
            series(
                "oreal_operator_reconcile_errors_total",
                {"namespace": NAMESPACE, "handler": "apply", "kind": "temporary"},
                "0+1x40",
            ),
            # bad specs are the runs' SpecInvalid condition, not an operator problem
            series(
                "oreal_operator_reconcile_errors_total",
                {"namespace": NAMESPACE, "handler": "status", "kind": "permanent"},
                "0+1x40",
            ),
        ],
        [
            ("10m", []),
            (
                "20m",
                [
                    alert(
                        {"namespace": NAMESPACE, "handler": "apply", "severity": "warning"},
                        summary="The oreal operator's apply handler keeps failing",
                        description=f"kubectl logs -n {NAMESPACE} deploy/oreal-operator",
                    )
                ],
            ),
        ],
    ),
    # Replica a leads for 10 minutes and then loses the Lease; b stands by throughout.
    "OREALOperatorAbsent": (
        [
            series("oreal_operator_leader", {"namespace": NAMESPACE, "pod": "a"}, "1x10 0x20"),
            series("oreal_operator_leader", {"namespace": NAMESPACE, "pod": "b"}, "0x30"),
            series("oreal_operator_leader", {"namespace": "other-install", "pod": "c"}, "1x30"),
        ],
        [
            ("9m", []),
            ("14m", []),  # pending for 5 minutes
            (
                "17m",
                [
                    alert(
                        {"severity": "critical"},
                        summary=f"No oreal operator reconciles OREALRuns (release oreal-operator in {NAMESPACE})",
                        description="Runs get no status updates and cannot be deleted (oreal.io/finalizer). "
                        f"kubectl get pods -n {NAMESPACE}",
                    )
                ],
            ),
        ],
    ),
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run `bash scripts/install_system_tools.sh` (Debian's prometheus)")
    return path


@pytest.fixture(scope="module")
def rules(helm: str) -> dict[str, Any]:
    rule = one(template(helm, *RULE_FLAGS), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


@pytest.fixture(scope="module")
def rules_file(rules: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return path


def alerts(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rules["groups"] for r in group["rules"]}


def test_the_rule_is_optional_and_needs_the_monitoring_api(helm: str) -> None:
    assert not [o for o in template(helm) if o["kind"] == "PrometheusRule"]
    from helm_chart import CHART, RELEASE, run_helm

    result = run_helm(helm, "template", RELEASE, str(CHART), "--set", "prometheusRule.enabled=true")
    assert result.returncode != 0 and "prometheusRule.enabled is true" in result.stderr


def test_promtool_accepts_the_rules(promtool: str, rules_file: Path) -> None:
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_promtool_case(rules: dict[str, Any]) -> None:
    assert set(alerts(rules)) == set(CASES)


def test_every_alert_reads_only_exported_metrics(rules: dict[str, Any]) -> None:
    assert all(module.__name__ for module in MODULES)
    exported = exported_metrics(REGISTRY)
    problems = [
        f"{name}: {p}" for name, rule in alerts(rules).items() for p in check_expr(rule["expr"], exported)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(CASES))
def test_alert_fires_on_synthetic_series(promtool: str, rules_file: Path, tmp_path: Path, name: str) -> None:
    inputs, checks = CASES[name]
    test = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {"eval_time": at, "alertname": name, "exp_alerts": expected} for at, expected in checks
                ],
            }
        ],
    }
    path = tmp_path / f"{name}.test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("flags", "name", "expected"),
    [
        (("--set", "prometheusRule.noProgressMinutes=90"), "OREALRunNoProgress", "[90m]"),
        (("--set-json", "prometheusRule.verifierTimeoutRatio=0.2"), "OREALVerifierTimeoutRateHigh", "> 0.2"),
    ],
)
def test_thresholds_come_from_values(helm: str, flags: tuple[str, ...], name: str, expected: str) -> None:
    rule = one(template(helm, *RULE_FLAGS, *flags), "PrometheusRule")
    assert expected in alerts({"groups": rule["spec"]["groups"]})[name]["expr"]


def test_operator_alerts_need_the_operator_metrics(helm: str) -> None:
    rule = one(template(helm, *RULE_FLAGS, "--set", "metrics.port=0"), "PrometheusRule")
    assert set(alerts({"groups": rule["spec"]["groups"]})) == {
        n for n in CASES if not n.startswith("OREALOperator")
    }
