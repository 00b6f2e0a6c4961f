"""``python -m lab``: backtest, trace, calibrate, validate (the lab against live serving).

Bad input (an unknown trace, format, policy, setting or profile; a trace
with missing columns or unsorted times) ends with one line on stderr naming
it and exit status 2, as argparse does for bad flags.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from lab.engine import Result, SimSettings, simulate
from lab.pods import parse_cold_start
from lab.profiles import BUNDLED as PROFILES
from lab.profiles import ProfileError, load_profile
from lab.routing import DEFAULT_ROUTING
from lab.summary import PLOTS, Slo
from lab.traces import BUNDLED as TRACES
from lab.traces import Trace, TraceError, load, transform

__all__ = ["main"]

PROG = "python -m lab"
DEFAULT_POLICIES = ("brix-slo", "keda-hpa", "kpa", "brix-loop", "brix-keda")


class UsageError(ValueError):
    """Bad input found after argparse: one line, exit 2."""


def _add_trace_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", type=float, default=0.0, help="cut: trace seconds to skip")
    p.add_argument("--duration", type=float, default=None, help="cut: trace seconds to keep")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="multiply every time (2: half the rate over twice the time)")
    p.add_argument("--rate-scale", type=float, default=1.0,
                   help="scale the request count at the same times (thinning or copies)")
    p.add_argument("--seed", type=int, default=0, help="seed of thinning, routing, cold starts")


def _parser() -> argparse.ArgumentParser:
    from lab.live import LoopSettings

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    bt = sub.add_parser("backtest", help="replay a trace under each policy; write a report",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=_policies_help())
    bt.add_argument("--trace", required=True,
                    help=f"bundled ({', '.join(TRACES)}), FILE.csv|.jsonl[.gz], "
                    "synthetic:KIND?k=v&..., prometheus:URL?model=..")
    bt.add_argument("--policies", nargs="+", default=None,
                    help=f"policy specs (default: {' '.join(DEFAULT_POLICIES)})")
    bt.add_argument("--policy-file", type=Path, default=None,
                    help="YAML: a list of specs, or a mapping of policy name to its settings")
    bt.add_argument("--profile", default="gpu-8b",
                    help=f"bundled ({', '.join(PROFILES)}) or a JSON file (lab calibrate)")
    bt.add_argument("--cold-start", default="60",
                    help="seconds before a new pod serves: 60, uniform:LO:HI, normal:MEAN:SD, "
                    "lognormal:MEAN:SIGMA")
    bt.add_argument("--slo-ttft", type=float, default=2.0, help="TTFT target, seconds")
    bt.add_argument("--slo-tpot", type=float, default=None, help="TPOT target, seconds")
    bt.add_argument("--slo-target", type=float, default=0.99,
                    help="share of requests that must meet the SLO")
    bt.add_argument("--routing", default=DEFAULT_ROUTING,
                    help="gateway routing: a strategy of gateway.picker or a built-in profile "
                    "of the gateway (fleet-prefill, least-prefill, prefix-cache) or one of "
                    "--routing-config (lab.routing); "
                    f"default: the gateway's own, {DEFAULT_ROUTING}")
    bt.add_argument("--routing-config", type=Path, default=None,
                    help="the gateway's routing config (YAML: profiles of scorers), as its "
                    "--routing-config")
    bt.add_argument("--scrape-interval", type=float, default=15.0)
    bt.add_argument("--scrape-lead", type=float, default=None,
                    help="seconds each Prometheus scrape comes before the policies' "
                    "decisions (its phase against them), in [0, --scrape-interval); "
                    "default: half the interval, the mean age of a scrape at a random "
                    "phase. Above 0 the initial fleet was scraped that long before the "
                    "trace began (it was up and idle). 0: scrapes at the decisions' "
                    "instants, each decision first, so it reads the scrape an interval old, "
                    "the history starts with the trace, and a trace whose arrivals are "
                    "rounded to whole seconds lands batches on the scrapes")
    bt.add_argument("--hold-timeout", type=float, default=60.0,
                    help="seconds the gateway holds a request while no pod is ready")
    bt.add_argument("--grace-period", type=float, default=30.0,
                    help="seconds a draining pod keeps its requests before it is killed "
                    "(terminationGracePeriodSeconds)")
    bt.add_argument("--tail", type=float, default=900.0,
                    help="seconds the run may go on after the trace, until the fleet settles")
    bt.add_argument("--initial-replicas", type=int, default=None,
                    help="ready pods at the start (default: the policy's minimum, else 1)")
    bt.add_argument("--baseline", default="keda-hpa",
                    help="policy family the cheapest settings are compared with")
    bt.add_argument("--out", type=Path, required=True, help="report folder")
    bt.add_argument("--plots", nargs="*", choices=PLOTS, default=list(PLOTS),
                    help="which plots to write (default: all; none: --plots with no name); "
                    "frontier: attainment against replica-hours, the view of a sweep of "
                    "settings, where the plots over time have a line too many")
    bt.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_trace_flags(bt)

    tr = sub.add_parser("trace", help="materialise a trace as Azure CSV and describe it")
    tr.add_argument("spec")
    tr.add_argument("--out", type=Path, default=None, help="CSV to write (default: none)")
    _add_trace_flags(tr)

    cal = sub.add_parser("calibrate", help="fit a timing profile against a live engine")
    cal.add_argument("--engine-url", required=True, help="the engine's base URL (vLLM or sim)")
    cal.add_argument("--out", type=Path, required=True, help="profile JSON to write")
    cal.add_argument("--name", default=None, help="profile name (default: the file's stem)")
    cal.add_argument("--model", default=None, help="model to ask (default: the first served)")
    cal.add_argument("--max-num-seqs", type=int, default=None,
                     help="the engine's --max-num-seqs (it does not report it; default 256, "
                     "vLLM's)")
    cal.add_argument("--max-num-batched-tokens", type=int, default=None,
                     help="the engine's step budget in tokens (default: vLLM's rule, "
                     "2048 with chunked prefill)")
    cal.add_argument("--no-enable-chunked-prefill", dest="enable_chunked_prefill",
                     action="store_false", help="the engine runs without chunked prefill")
    cal.add_argument("--long-prefill-token-threshold", type=int, default=0,
                     help="the engine's cap on one prompt's chunk per step (default 0: none)")
    cal.add_argument("--kv-cache-tokens", type=int, default=None,
                     help="KV cache in tokens (default: vLLM's cache_config_info, else "
                     "max_num_seqs x max_model_len)")
    cal.add_argument("--batch", type=int, default=8, help="concurrent streams of the batch run")
    cal.add_argument("--quiet", action="store_true")
    val = sub.add_parser("validate", help="replay a trace against one live engine, or the "
                         "live stack through its gateway; compare with the lab's prediction")
    where = val.add_mutually_exclusive_group(required=True)
    where.add_argument("--engine-url", help="one engine's base URL (vLLM or sim)")
    where.add_argument("--gateway-url", help="the live stack's gateway: its model's "
                       "Deployment is scaled by the scaler's fallback loop (queue signal)")
    val.add_argument("--trace", default="validate-5min")
    val.add_argument("--profile", required=True, help="the profile the engines run with")
    val.add_argument("--slo-ttft", type=float, default=2.0)
    val.add_argument("--out", type=Path, default=None, help="JSON of the comparison")
    stack = val.add_argument_group("with --gateway-url: the live stack's settings")
    stack.add_argument("--model", default=None, help="served model name")
    stack.add_argument("--kubeconfig", default=None, help="else $KUBECONFIG, else in-cluster")
    stack.add_argument("--namespace", default="default", help="the Deployment's namespace")
    stack.add_argument("--deployment", default=None, help="default: the model's name")
    loop = LoopSettings()  # the scaler's defaults
    stack.add_argument("--loop-interval", type=float, default=loop.interval,
                       help="the scaler's flag")
    stack.add_argument("--stabilization-window", type=float, default=loop.stabilization_window,
                       help="the scaler's flag")
    stack.add_argument("--scale-period", type=float, default=loop.scale_period,
                       help="the scaler's flag")
    stack.add_argument("--scale-to-zero-cooldown", type=float,
                       default=loop.scale_to_zero_cooldown, help="the scaler's flag")
    stack.add_argument("--panic-window", type=float, default=loop.panic_window,
                       help="the scaler's flag")
    stack.add_argument("--scrape-interval", type=float, default=15.0,
                       help="Prometheus' scrape interval of the pods and the gateway")
    stack.add_argument("--hold-timeout", type=float, default=60.0, help="the gateway's flag")
    stack.add_argument("--prometheus-url", default=None,
                       help="the scaler's Prometheus: first check it scrapes the model's engines; "
                       "the lab scrapes at its phase")
    stack.add_argument("--scaler-metrics-url", default=None,
                       help="the scaler's /metrics: the lab decides when the live loop's "
                       "passes came")
    stack.add_argument("--routing", default=DEFAULT_ROUTING,
                       help="the gateway's --routing: a gateway.picker strategy or its "
                       f"built-in profile (default: the gateway's own, {DEFAULT_ROUTING})")
    stack.add_argument("--settle", type=float, default=60.0,
                       help="seconds both sides go on after the trace (the scale-down)")
    stack.add_argument("--cold-start", type=float, default=None,
                       help="the lab's pod start, seconds (default: measured on the live pods)")
    _add_trace_flags(val)
    return parser


def _policies_help() -> str:
    try:
        from lab.policies.registry import describe
    except ImportError:  # pragma: no cover - the registry is part of the package
        return ""
    return describe()


def _trace(args: argparse.Namespace, spec: str) -> Trace:
    trace = load(spec)
    return transform(trace, start=args.start, duration=args.duration,
                     time_scale=args.time_scale, rate_scale=args.rate_scale, seed=args.seed)


def _policy_specs(args: argparse.Namespace) -> list[str]:
    specs = list(args.policies or [])
    if args.policy_file is not None:
        try:
            data = yaml.safe_load(args.policy_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise UsageError(f"--policy-file {args.policy_file}: {e}".splitlines()[0]) from None
        if isinstance(data, list) and all(isinstance(x, str) for x in data):
            specs += data
        elif isinstance(data, dict):
            for name, settings in data.items():
                if settings in (None, {}):
                    specs.append(str(name))
                elif isinstance(settings, dict):
                    specs.append(f"{name}:" + ";".join(
                        f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                        for k, v in settings.items()))
                else:
                    raise UsageError(f"--policy-file: settings of {name} must be a mapping")
        else:
            raise UsageError("--policy-file: expected a list of specs or a mapping of "
                             "policy name to settings")
    return specs or list(DEFAULT_POLICIES)


def backtest(args: argparse.Namespace) -> int:
    from lab.policies.registry import parse

    specs = _policy_specs(args)
    policies = [p for spec in specs for p in parse(spec)]
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise UsageError(f"a policy is given twice: {', '.join(names)}")
    trace = _trace(args, args.trace)
    profile = load_profile(args.profile)
    slo = Slo(ttft=args.slo_ttft, tpot=args.slo_tpot, target=args.slo_target)
    from gateway.routing_config import RoutingConfigError, load_routing_config
    try:
        routing_config = load_routing_config(args.routing_config)
    except (OSError, RoutingConfigError) as e:
        raise UsageError(f"--routing-config {args.routing_config}: {e}") from None
    if not args.scrape_interval > 0:
        raise UsageError(f"--scrape-interval must be > 0, got {args.scrape_interval:g}")
    lead = args.scrape_interval / 2 if args.scrape_lead is None else args.scrape_lead
    if not 0 <= lead < args.scrape_interval:
        raise UsageError(f"--scrape-lead must be within [0, --scrape-interval "
                         f"{args.scrape_interval:g}), got {lead:g}")
    settings = SimSettings(cold_start=parse_cold_start(args.cold_start), routing=args.routing,
                           routing_config=routing_config,
                           scrape_interval=args.scrape_interval, hold_timeout=args.hold_timeout,
                           initial_replicas=args.initial_replicas, seed=args.seed,
                           grace_period=args.grace_period, tail=args.tail,
                           first_scrape=-lead)
    from lab.routing import routings
    if args.routing not in routings(routing_config):
        raise UsageError(f"unknown routing strategy {args.routing!r} "
                         f"(known: {', '.join(routings(routing_config))})")
    results: dict[str, Result] = {}
    timings: dict[str, float] = {}
    for policy in policies:
        started = time.process_time()
        results[policy.name] = _run_one(trace, profile, policy.make(), settings, policy.name,
                                        quiet=args.quiet)
        timings[policy.name] = round(time.process_time() - started, 3)
    from lab.report import write_report
    recorded: dict[str, Any] = {
        "profile": profile.to_json(), "cold_start": args.cold_start, "routing": args.routing,
        "routing_config": None if args.routing_config is None else str(args.routing_config),
        "scrape_interval": args.scrape_interval, "scrape_lead": lead,
        "hold_timeout": args.hold_timeout, "initial_replicas": args.initial_replicas,
        "seed": args.seed,
        "grace_period": args.grace_period, "tail": args.tail, "policies": specs,
        "cpu_seconds": timings,
    }
    from lab.ceiling import slo_ceiling
    summary = write_report(args.out, trace, results, slo, settings=recorded,
                           baseline=args.baseline, plots_wanted=args.plots,
                           ceiling=slo_ceiling(trace, profile, slo))
    if not args.quiet:
        for name, row in summary["policies"].items():
            print(f"{name}: SLO {row['slo_attainment']:.2%}, TTFT p99 {row['ttft_p99_s']} s, "
                  f"{row['replica_hours']} replica-h, {row['failed']} failed, "
                  f"prefix-cache hit ratio {row['prefix_hit_ratio']}", file=sys.stderr)
        from lab.report import ceiling_sentence
        print(ceiling_sentence(summary["ceiling"]), file=sys.stderr)
    print(f"report: {args.out / 'report.md'}")
    return 0


def _run_one(trace: Trace, profile: Any, policy: Any, settings: SimSettings, name: str, *,
             quiet: bool) -> Result:
    if quiet:
        return simulate(trace, profile, policy, settings)
    from tqdm import tqdm

    total = round(trace.duration)
    with tqdm(total=total, unit="s", desc=name, file=sys.stderr, leave=False) as bar:
        def progress(t: float) -> None:
            bar.update(max(0, min(round(t), total) - bar.n))

        result = simulate(trace, profile, policy, settings, progress)
        bar.update(total - bar.n)
    return result


def trace_command(args: argparse.Namespace) -> int:
    trace = _trace(args, args.spec)
    for key, value in trace.describe().items():
        print(f"{key}: {value}")
    if args.out is not None:
        from lab.traces.files import write_azure_csv
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", encoding="utf-8") as f:
            write_azure_csv(trace, f)
        print(f"written: {args.out}")
    return 0


def calibrate_command(args: argparse.Namespace) -> int:
    from lab.calibrate import calibrate

    name = args.name or args.out.stem
    profile = calibrate(args.engine_url, name=name, model=args.model,
                        max_num_seqs=args.max_num_seqs, kv_cache_tokens=args.kv_cache_tokens,
                        max_num_batched_tokens=args.max_num_batched_tokens,
                        enable_chunked_prefill=args.enable_chunked_prefill,
                        long_prefill_token_threshold=args.long_prefill_token_threshold,
                        batch=args.batch, quiet=args.quiet)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    import json
    args.out.write_text(json.dumps(profile.to_json(), indent=2) + "\n", encoding="utf-8")
    print(f"profile: {args.out}")
    return 0


def validate_command(args: argparse.Namespace) -> int:
    from lab.validate import validate

    trace = _trace(args, args.trace)
    profile = load_profile(args.profile)
    if args.gateway_url is not None:
        return _validate_stack(args, trace, profile)
    comparison = validate(args.engine_url, trace, profile, Slo(ttft=args.slo_ttft))
    ratios = comparison.ratios()
    print(f"{'figure':<16}{'real':>10}{'lab':>10}{'lab/real':>10}")
    for key, real in comparison.real.items():
        sim = comparison.sim[key]
        ratio = ratios[key]
        print(f"{key:<16}{_num(real):>10}{_num(sim):>10}{_num(ratio):>10}")
    if args.out is not None:
        import json
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"trace": trace.describe(), "profile": profile.name,
                                        **comparison.to_json()}, indent=2) + "\n")
        print(f"written: {args.out}")
    return 0


def _validate_stack(args: argparse.Namespace, trace: Trace, profile: Any) -> int:
    from lab.live import LoopSettings, validate_stack
    from lab.routing import routings

    if not args.model:
        raise UsageError("--gateway-url needs --model")
    if args.routing not in routings():
        raise UsageError(f"unknown routing strategy {args.routing!r} "
                         f"(known: {', '.join(routings())})")
    if not (args.scrape_interval > 0 and args.settle >= 0 and args.hold_timeout >= 0) or (
            args.cold_start is not None and not args.cold_start >= 0):
        raise UsageError("need --scrape-interval > 0, --settle, --hold-timeout and "
                         "--cold-start >= 0")
    loop = LoopSettings(interval=args.loop_interval,
                        stabilization_window=args.stabilization_window,
                        scale_period=args.scale_period,
                        scale_to_zero_cooldown=args.scale_to_zero_cooldown,
                        panic_window=args.panic_window)
    report = validate_stack(
        args.gateway_url, args.model, trace, profile, Slo(ttft=args.slo_ttft),
        kubeconfig=args.kubeconfig, namespace=args.namespace,
        deployment=args.deployment or args.model, loop=loop,
        scrape_interval=args.scrape_interval, hold_timeout=args.hold_timeout,
        routing=args.routing, settle=args.settle, cold_start=args.cold_start, seed=args.seed,
        prometheus_url=args.prometheus_url, scaler_metrics_url=args.scaler_metrics_url)
    real, sim, ratios = report["real"], report["sim"], report["sim_over_real"]
    print(f"{'figure':<18}{'real':>10}{'lab':>10}{'lab/real':>10}")
    for key, value in real.items():
        print(f"{key:<18}{_num(value):>10}{_num(sim[key]):>10}{_num(ratios[key]):>10}")
    diff = report["mean_abs_diff"]
    print(f"replicas over {report['window_s']:g} s, mean |real - lab|: spec {diff['spec']:.3f}, "
          f"ready {diff['ready']:.3f}, pods {diff['pods']:.3f}; pod start "
          f"{report['pod_start_s']['measured']} s (lab: {report['settings']['cold_start_s']} s)")
    if args.out is not None:
        import json
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"trace": trace.describe(), "profile": profile.name,
                                        **report}, indent=2) + "\n")
        print(f"written: {args.out}")
    return 0


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    commands = {"backtest": backtest, "trace": trace_command, "calibrate": calibrate_command,
                "validate": validate_command}
    try:
        return commands[args.command](args)
    except (TraceError, ProfileError, UsageError, ValueError, httpx.HTTPError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 2
