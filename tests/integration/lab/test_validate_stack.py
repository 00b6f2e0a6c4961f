"""``lab validate --gateway-url`` against the live stack on localkube: the fleet the scaler's
fallback loop ran, and the latencies measured through the gateway, agree with the lab's
prediction for the same trace and settings within the tolerances below.

The trace (90 s of validate-5min, about one request a second) overloads one pod of this
profile (3 sequences at a time, about 10 s per answer), so the loop scales 1 -> N while it
runs and back to 1 in the minute after it. The tolerances are what this busy 2-core machine
reached (bench/lab/RESULTS.md), with margin; the last check shows they can fail: the same
comparison with the lab's loop interval mis-set is outside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.cli import main
from lab.engine import SimSettings, simulate
from lab.fleet import mean_abs_diff
from lab.policies.brix import BrixLoop
from lab.profiles import load_profile
from lab.traces import load, transform
from tests.helpers.lab_stack import LOOP, PROFILE, start_lab_stack
from tests.helpers.procs import ProcessGroup

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DURATION = 90
SETTLE = 60

# Reached here (bench/lab/RESULTS.md; the runs of 90 s and of 5 minutes recorded there,
# but the one before the sidecar's readiness fix): spec and ready replicas within
# 0.055-0.20 on average, replica-seconds 0.99-1.02, SLO attainment within 0.00-0.05,
# e2e p50 0.99-1.01; with margin for a busy machine.
MAX_SPEC_DIFF = 0.5  # time-weighted mean |spec (and ready) replicas real - lab|
REPLICA_SECONDS = (0.8, 1.25)  # lab / real
TTFT_P50_SLACK = 0.5  # seconds either way
# The lab on the live loop's and Prometheus' clock (their passes and scrape phase): TTFT
# p99 lab/real 0.999 over the whole 5-minute trace (2026-12-05); on its own clock the same
# run gave 0.72, and over loop and scrape phases alone the lab's p99 spans 23-38 s there.
TTFT_P99 = (0.75, 1.33)  # lab / real
E2E_P50 = (0.8, 1.25)  # lab / real
ATTAINMENT_SLACK = 0.1


def test_the_lab_predicts_the_live_stack(procs: ProcessGroup, tmp_path: Path) -> None:
    stack = start_lab_stack(procs, tmp_path, profile=PROFILE, loop=LOOP)
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(PROFILE))
    out = tmp_path / "validate.json"
    code = main(["validate", *stack.validate_args(), "--profile", str(profile),
                 "--trace", "validate-5min", "--duration", str(DURATION),
                 "--settle", str(SETTLE), "--slo-ttft", "2.0", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    real, sim = report["real"], report["sim"]
    print(json.dumps({k: v for k, v in report.items()
                      if k not in ("series", "requests", "own_clock")}, indent=1))
    # The load made the real loop scale up and back down, and the lab too.
    assert real["max_spec"] >= 3
    assert sim["max_spec"] >= 3
    assert report["series"]["real"][-1][2] == LOOP.min_replicas
    assert report["series"]["sim"][-1][2] == LOOP.min_replicas
    assert report["pod_start_s"]["measured"]
    # The lab kept the live stack's clock: the loop's passes and Prometheus' scrape phase.
    assert len(report["settings"]["live_loop_passes_s"]) >= DURATION // LOOP.interval
    assert report["settings"]["live_scrape_phase_s"] is not None
    # The tolerances.
    assert report["mean_abs_diff"]["spec"] <= MAX_SPEC_DIFF
    assert report["mean_abs_diff"]["ready"] <= MAX_SPEC_DIFF
    low, high = REPLICA_SECONDS
    assert low <= report["sim_over_real"]["replica_seconds"] <= high
    assert abs(sim["ttft_p50_s"] - real["ttft_p50_s"]) <= TTFT_P50_SLACK
    assert TTFT_P99[0] <= report["sim_over_real"]["ttft_p99_s"] <= TTFT_P99[1]
    assert E2E_P50[0] <= report["sim_over_real"]["e2e_p50_s"] <= E2E_P50[1]
    assert abs(sim["slo_attainment"] - real["slo_attainment"]) <= ATTAINMENT_SLACK

    # The same comparison with the lab's loop interval mis-set (60 s instead of 5 s)
    # is outside the tolerance: the check can fail.
    settings = report["settings"]
    trace = transform(load("validate-5min"), duration=DURATION)
    wrong = simulate(trace, load_profile(str(profile)), BrixLoop(
        target=LOOP.target, min_replicas=LOOP.min_replicas, max_replicas=LOOP.max_replicas,
        interval=60.0, stabilization_window=LOOP.stabilization_window,
        scale_period=LOOP.scale_period), SimSettings(
        cold_start=lambda _rng: settings["cold_start_s"], routing="least-request",
        scrape_interval=stack.scrape_interval, initial_replicas=settings["initial_replicas"],
        grace_period=settings["grace_period_s"], tail=SETTLE))
    real_spec = [(max(0.0, t), float(spec)) for t, _, spec, _ in report["series"]["real"]]
    wrong_spec = [(t, float(spec)) for t, _, spec, _ in wrong.timeline]
    assert mean_abs_diff(real_spec, wrong_spec, 0.0, report["window_s"]) > MAX_SPEC_DIFF
