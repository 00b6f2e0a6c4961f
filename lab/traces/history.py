"""``prometheus:URL?model=NAME&start=T&end=T&step=60``: a window of a model's own history.

Per step of the range query (seconds, default 60) it reads from the Prometheus
at URL, over ``model``'s series:

- the request rate: ``sum(rate(brix_gateway_requests_total[step]))``;
- the mean prompt and generation lengths: the engines' token counters'
  rates (``brix_engine_prompt_tokens_total``, ``brix_engine_generation_tokens_total``)
  over that request rate.

and makes a seeded trace that follows them: a Poisson count of requests per
step, spread uniformly in it, each with the step's mean lengths (lognormal
around them when ``sigma`` > 0). ``start``/``end`` are Unix seconds or ISO 8601;
``end`` defaults to now and ``start`` to an hour before it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime

import httpx
import numpy as np

from lab.traces.model import Request, Trace, TraceError

__all__ = ["from_prometheus"]

_KNOWN = ("model", "start", "end", "step", "seed", "sigma")


def _instant(text: str, key: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise TraceError(f"prometheus: {key}={text!r} is neither Unix seconds nor ISO 8601") \
            from None


def _range(client: httpx.Client, url: str, promql: str, *, start: float, end: float,
           step: float) -> dict[float, float]:
    try:
        r = client.get(f"{url}/api/v1/query_range",
                       params={"query": promql, "start": start, "end": end, "step": step})
    except httpx.HTTPError as e:
        raise TraceError(f"prometheus: cannot reach {url}: {e}") from None
    if r.status_code != 200:
        raise TraceError(f"prometheus: {url} answered {r.status_code} to {promql}: "
                         f"{r.text[:200]}")
    result = r.json()["data"]["result"]
    if not result:
        return {}
    return {float(t): float(v) for t, v in result[0]["values"] if math.isfinite(float(v))}


def from_prometheus(url: str, given: Mapping[str, str]) -> Trace:
    unknown = sorted(set(given) - set(_KNOWN))
    if unknown:
        raise TraceError(f"prometheus: unknown parameter(s) {', '.join(unknown)} "
                         f"(known: {', '.join(_KNOWN)})")
    model = given.get("model")
    if not model:
        raise TraceError("prometheus: model=NAME is required")
    if not url.startswith(("http://", "https://")):
        raise TraceError(f"prometheus: {url!r} is not an http(s) URL")
    end = _instant(given["end"], "end") if "end" in given else time.time()
    start = _instant(given["start"], "start") if "start" in given else end - 3600
    try:
        step = float(given.get("step", "60"))
        seed = int(given.get("seed", "0"))
        sigma = float(given.get("sigma", "0"))
    except ValueError as e:
        raise TraceError(f"prometheus: bad step, seed or sigma ({e})") from None
    if step <= 0 or end <= start or sigma < 0:
        raise TraceError("prometheus: need step > 0, sigma >= 0 and start < end")
    sel = f'{{model="{model}"}}'
    window = f"{int(step)}s"
    url = url.rstrip("/")
    with httpx.Client(timeout=30.0) as client:
        rates = _range(client, url, f"sum(rate(brix_gateway_requests_total{sel}[{window}]))",
                       start=start, end=end, step=step)
        prompt = _range(client, url, f"sum(rate(brix_engine_prompt_tokens_total{sel}[{window}]))",
                        start=start, end=end, step=step)
        gen = _range(client, url,
                     f"sum(rate(brix_engine_generation_tokens_total{sel}[{window}]))",
                     start=start, end=end, step=step)
    if not rates:
        raise TraceError(f"prometheus: no brix_gateway_requests_total for model {model!r} "
                         f"between {start:.0f} and {end:.0f}")
    rng = np.random.default_rng(seed)
    requests: list[Request] = []
    last_prompt, last_output = 1.0, 1.0
    for t in sorted(rates):
        rate = rates[t]
        if rate > 0 and t in prompt and t in gen:
            last_prompt = max(1.0, prompt[t] / rate)
            last_output = max(1.0, gen[t] / rate)
        n = int(rng.poisson(rate * step))
        offsets = np.sort(rng.uniform(0.0, step, n))
        for off in offsets:
            p, o = last_prompt, last_output
            if sigma > 0:
                p *= float(rng.lognormal(-sigma * sigma / 2, sigma))
                o *= float(rng.lognormal(-sigma * sigma / 2, sigma))
            # A sample at t covers the step that ends at t.
            requests.append(Request(arrival=t - step - start + float(off),
                                    prompt_tokens=max(1, round(p)),
                                    output_tokens=max(1, round(o))))
    if not requests:
        raise TraceError(f"prometheus: model {model!r} had no requests in the window")
    base = min(0.0, requests[0].arrival)
    shifted = [Request(r.arrival - base, r.prompt_tokens, r.output_tokens) for r in requests]
    return Trace.of(f"prometheus:{model}", shifted, end - start)
