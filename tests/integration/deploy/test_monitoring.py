"""Prometheus configs, rules and dashboards: valid, tested, and within the metric contract."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from brix.contract import METRIC_NAMES
from tests.helpers.manifests import REPO

MON = REPO / "monitoring"
RULE_FILES = sorted((MON / "rules").glob("*.rules.yml"))
RULE_TESTS = sorted((MON / "rules" / "tests").glob("*.test.yml"))
DASHBOARDS = sorted((MON / "grafana").glob("*.json"))

# Grafana's variables, replaced by values PromQL accepts.
_GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$model": "m"}
_SERIES_SUFFIXES = ("_bucket", "_sum", "_count")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make test` installs Debian's prometheus package"
    return subprocess.run([path, *map(str, args)], capture_output=True, text=True, check=False)


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                out.append((f"{path.name}: {panel['title']}", target["expr"]))
    return out


def _metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (not label names, functions or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # drop string literals
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # drop label matchers
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n.startswith(("brix_", "model:"))}


def test_rule_files_are_valid() -> None:
    result = promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(test_file: Path) -> None:
    result = promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_is_covered_by_a_promtool_test() -> None:
    tested_text = "\n".join(p.read_text() for p in RULE_TESTS)
    tests = [t for p in RULE_TESTS for t in yaml.safe_load(p.read_text())["tests"]]
    alerts_tested = {
        a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if a.get("exp_alerts")
    }
    exprs_tested = {e["expr"] for t in tests for e in t.get("promql_expr_test", [])}
    for rule in _rules():
        if "alert" in rule:
            assert rule["alert"] in alerts_tested, f"alert {rule['alert']} never fires in a test"
        else:
            assert rule["record"] in exprs_tested, f"recording rule {rule['record']} is untested"
    assert tested_text


def test_local_config_is_valid_for_debian_prometheus() -> None:
    result = promtool("check", "config", MON / "prometheus" / "prometheus-local.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_cluster_config_matches_the_local_one_but_uses_kubernetes_discovery() -> None:
    # Debian's promtool has no Kubernetes discovery, so the cluster config is
    # checked by structure: same jobs and relabelling, pod-role discovery.
    cluster = yaml.safe_load((MON / "prometheus" / "prometheus.yml").read_text())
    local = yaml.safe_load((MON / "prometheus" / "prometheus-local.yml").read_text())
    assert [j["job_name"] for j in cluster["scrape_configs"]] == [
        j["job_name"] for j in local["scrape_configs"]
    ]
    for cj, lj in zip(cluster["scrape_configs"], local["scrape_configs"], strict=True):
        assert cj["kubernetes_sd_configs"] == [{"role": "pod"}], cj["job_name"]
        assert "http_sd_configs" in lj
        assert "kubernetes_sd_configs" not in lj
        assert cj["relabel_configs"] == lj["relabel_configs"], cj["job_name"]
    assert {Path(p).name for p in cluster["rule_files"]} == {p.name for p in RULE_FILES}


def test_every_expression_parses() -> None:
    # promtool parses every expression when it checks a rule file: put the
    # dashboards' expressions (Grafana variables replaced) into one.
    exprs = _dashboard_exprs()
    assert exprs
    rules = []
    for i, (_, original) in enumerate(exprs):
        expr = original
        for var, value in _GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
    tmp = REPO / ".pytest-dashboard-rules.yml"
    try:
        tmp.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
        result = promtool("check", "rules", tmp)
    finally:
        tmp.unlink(missing_ok=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_named_is_in_the_contract() -> None:
    recorded = {r["record"] for r in _rules() if "record" in r}
    sources = [(f"rule {r.get('record') or r.get('alert')}", r["expr"]) for r in _rules()]
    sources += _dashboard_exprs()
    named_any = set()
    for where, expr in sources:
        for name in _metric_names(expr):
            named_any.add(name)
            if name.startswith("model:"):
                assert name in recorded, f"{where}: {name} is no recording rule"
                continue
            base = name
            for suffix in _SERIES_SUFFIXES:
                if name.endswith(suffix) and name[: -len(suffix)] in METRIC_NAMES:
                    base = name[: -len(suffix)]
            assert base in METRIC_NAMES, f"{where}: {name} is not in brix/contract.py METRICS"
    assert len(named_any) > 10


def test_dashboards_use_the_datasource_variable_and_cover_the_model_board() -> None:
    titles = {json.loads(p.read_text())["uid"]: p for p in DASHBOARDS}
    assert set(titles) == {"brix-fleet", "brix-model"}
    board = json.loads(titles["brix-model"].read_text())
    text = json.dumps(board)
    for needed in (
        "brix_gateway_requests_total",
        "time_to_first_token",
        "e2e_request_latency",
        "requests_waiting",
        "brix_scaler_desired_replicas",
        "kv_cache",
        "brix_gpu_",
        "brix_lora_adapters_loaded",
    ):
        assert needed in text, f"the per-model board shows no {needed}"
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", f"{path.name}: {panel['title']}"


def test_prometheusrule_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(MON / "make_prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
