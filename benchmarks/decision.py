"""The policy decision alone, in process: authenticate -> attribute -> bound -> decide -> reserve -> ledger row.

It drives the same functions `Gateway` calls, on the benchmark organisation's
SQLite store (WAL), cycling through the 2,000 keys. Each timed decision is
followed by its settlement (timed apart), as in real traffic, so holds and
the ledger grow exactly as they do behind the HTTP edge.

    python -m benchmarks.decision --config DIR/p402.yaml --n 20000
prints one JSON object with p50/p99/p999 in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from typing import Any

import orjson

__all__ = ["measure", "main"]



async def measure(config_path: str, n: int, warmup: int = 2_000) -> dict[str, Any]:
    """Run `warmup + n` decisions and settlements; percentiles of the last `n`."""
    from p402.config import load_config
    from p402.core.decision import Ask, Decision, decide, prepare
    from p402.core.ids import new_id
    from p402.pipeline.auth import attribute
    from p402.pipeline.ports import Usage
    from p402.pipeline.records import decision_entry, settlement_entry
    from p402.pipeline.tokens import chat_input_bound
    from p402.wiring import WRITE_OUT_INTERVAL_S, build_runtime

    from benchmarks.org import chat_body, clients

    runtime = await build_runtime(load_config(config_path))
    gc.collect()
    gc.freeze()  # as `p402 serve` does once started (p402/web/app.py)
    gateway, store = runtime.gateway, runtime.store
    policy = runtime.policies.current
    model = policy.models[chat_body()["model"]]
    body = chat_body()
    people = clients()
    decide_ns: list[int] = []
    settle_ns: list[int] = []
    denied = 0
    written_at = time.perf_counter_ns()
    for i in range(warmup + n):
        secret, project = people[i % len(people)]
        t0 = time.perf_counter_ns()
        key = await gateway.keys.authenticate(secret)
        assert key is not None, "the benchmark's keys are applied with the config"
        who = attribute(key, {"project": project}, None)
        now = gateway.clock()
        ask = Ask(who=who, model=model, input_tokens=chat_input_bound(body, model.tokenizer),
                  max_tokens=body["max_tokens"], wants_output=True, now=now)
        event_id = new_id("evt", now)
        plan = prepare(ask, policy)
        if isinstance(plan, Decision):
            raise SystemExit(f"the benchmark organisation denied a request: {plan.reason}")

        def entry(d: Decision, hold_id: str | None) -> dict[str, Any]:
            return decision_entry(event_id, now, ask, "chat", d, policy.version, hold_id)

        decision, hold_id = await store.reserve(plan, decide, entry, runtime.config.hold_ttl_s, now)
        t1 = time.perf_counter_ns()
        if hold_id is None:
            denied += 1
            continue
        assert model.price is not None
        usage = Usage(input_tokens=24, output_tokens=16, reported=True)
        cost = model.price.cost(usage.input_tokens, usage.output_tokens)
        await store.settle(hold_id, cost, settlement_entry(event_id, gateway.clock(), ask, hold_id,
                                                           decision.estimate_nanos, cost, usage, "ok", policy.version))
        t2 = time.perf_counter_ns()
        if t2 - written_at >= WRITE_OUT_INTERVAL_S * 1e9:  # as the gateway's background task does, between requests
            await runtime.write_out()
            written_at = time.perf_counter_ns()
        if i >= warmup:
            decide_ns.append(t1 - t0)
            settle_ns.append(t2 - t1)
    await runtime.close()
    return {"n": len(decide_ns), "denied": denied, "counters_per_request": len(plan.keys),
            "decision_us": _percentiles(decide_ns), "settle_us": _percentiles(settle_ns)}


def _percentiles(values: list[int]) -> dict[str, float]:
    from benchmarks.loadgen import percentile
    values.sort()
    return {name: round(percentile(values, q) / 1000, 1) for name, q in
            (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9))} | {"max": round(values[-1] / 1000, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="p402 policy decision micro-benchmark")
    parser.add_argument("--config", required=True)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    args = parser.parse_args(argv)
    gc.collect()
    result = asyncio.run(measure(args.config, args.n, args.warmup))
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
