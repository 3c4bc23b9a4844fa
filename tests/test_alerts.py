"""The Prometheus alerting rules of dlkit/assets/monitoring, run by promtool."""

import importlib.resources
import re
import shutil
import subprocess

import prometheus_client
import pytest
import yaml

from dlkit import serve  # registers the server's metrics in this process

MONITORING = importlib.resources.files("dlkit") / "assets/monitoring"


def rules():
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_pass_their_promtool_unit_tests():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(
            "promtool not found: install Debian's `prometheus` package "
            "(.ci/run does) to run the alerting-rule tests"
        )
    with importlib.resources.as_file(MONITORING) as folder:
        result = subprocess.run(
            [promtool, "test", "rules", "alerts_test.yml"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_and_explained():
    tests = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
    tested = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]  # a test in which it fires
    }
    alerts = [rule for rule in rules() if "alert" in rule]
    assert {rule["alert"] for rule in alerts} == tested
    for rule in alerts:
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_rules_use_only_metrics_the_server_exports():
    exported = set(prometheus_client.REGISTRY._names_to_collectors)
    assert "dlkit_model_version" in exported, serve.__name__
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        names = set(
            re.findall(r"\b[a-z_]+(?:_total|_bucket|_count|_version)\b", rule["expr"])
        )
        assert names and names <= exported | recorded, (rule, names - exported)
