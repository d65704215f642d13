"""Run the whole benchmark: fake upstream, p402, the bare proxy and LiteLLM, measured in one run.

    python -m benchmarks.run [--quick] [--out benchmarks/results]

Order: the decision micro-benchmark (in process, on its own store file), then
the fake upstream called directly (the baseline every added latency is taken
against), then each system under test in turn, alone on the machine:
latency at concurrency 1 and at a paced rate, throughput at 64 and 256
concurrent connections (non-streaming and streaming), and peak memory with
1,000 concurrent streams. Results: `latest.json`, `latest.png`, and a table of
ratios on stdout (see `benchmarks.report`).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson

from benchmarks import litellm_setup, loadgen, org, procs, report

__all__ = ["Settings", "run", "main", "REPO"]

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """How long and how hard; `--quick` shortens every phase."""

    duration_s: float = 10.0  # each measured phase
    warmup_s: float = 2.0  # before each phase, not recorded
    # Below every system's capacity on every host seen: LiteLLM streams ~31 req/s at concurrency 1
    # on the slower (AMD) host, so 50/s was a queue there, not a latency.
    paced_rps: float = 20.0
    decision_n: int = 50_000
    streams: int = 1_000
    saturation: tuple[int, ...] = (64, 256)
    rounds: int = 8  # interleaved A/B rounds for the headline ratios (see `_interleaved`)
    slice_s: float = 3.0  # each system's turn in one round

    @classmethod
    def quick(cls) -> Settings:
        return cls(duration_s=1.5, warmup_s=0.5, decision_n=10_000, rounds=2, slice_s=1.0)


@dataclass
class Target:
    """A server to measure and the requests it is sent."""

    name: str
    port: int
    plain: list[bytes]
    stream: list[bytes]
    slow: list[bytes]
    pid: int | None = None


def _requests(port: int, headers: list[list[tuple[str, str]]], model: str = org.MODEL,
              stream: bool = False) -> list[bytes]:
    body = orjson.dumps(org.chat_body(model, stream))
    return [loadgen.build_request("127.0.0.1", port, "/v1/chat/completions", body, h) for h in headers]


def _target(name: str, port: int, headers: list[list[tuple[str, str]]]) -> Target:
    return Target(name, port, _requests(port, headers), _requests(port, headers, stream=True),
                  _requests(port, headers, org.SLOW_MODEL, stream=True))


def _p402_headers() -> list[list[tuple[str, str]]]:
    # The generator cycles through all 2,000 keys, each with its project header (4 budgets per request).
    return [[("Authorization", f"Bearer {secret}"), ("X-P402-Project", project)] for secret, project in org.clients()]


async def _phases(t: Target, s: Settings, log: Callable[[str], None], memory: bool = True) -> dict[str, Any]:
    """Every load phase against one target. Latency phases share one core with the load (see docs)."""
    out: dict[str, Any] = {}
    host = "127.0.0.1"

    async def phase(label: str, run: Awaitable[loadgen.Sample]) -> None:
        t0 = time.perf_counter()
        result = loadgen.summarize(await run)
        out[label] = result
        log(f"  {t.name:<8} {label:<14} {result['rps']:>8.1f} req/s  p50 {result['latency_ms']['p50']:.3f} ms  "
            f"p99 {result['latency_ms']['p99']:.3f} ms  ttfb p50 {result['ttfb_ms']['p50']:.3f} ms  "
            f"errors {result['errors']}  ({time.perf_counter() - t0:.0f} s)")

    if t.pid is not None:
        procs.move(t.pid, procs.LOAD_CPUS)
    await phase("c1", loadgen.closed_loop(host, t.port, t.plain, 1, s.duration_s, s.warmup_s))
    await phase("c1_stream", loadgen.closed_loop(host, t.port, t.stream, 1, s.duration_s, s.warmup_s))
    await phase("paced", loadgen.paced(host, t.port, t.plain, s.paced_rps, s.duration_s, s.warmup_s))
    await phase("paced_stream", loadgen.paced(host, t.port, t.stream, s.paced_rps, s.duration_s, s.warmup_s))
    if t.pid is not None:
        procs.move(t.pid, procs.SUT_CPUS)
    for c in s.saturation:
        await phase(f"sat{c}", loadgen.closed_loop(host, t.port, t.plain, c, s.duration_s, s.warmup_s))
        await phase(f"sat{c}_stream", loadgen.closed_loop(host, t.port, t.stream, c, s.duration_s, s.warmup_s))
    if memory and t.pid is not None:
        idle = procs.rss_bytes(t.pid)
        with procs.RssSampler(t.pid) as sampler:
            sample = await loadgen.hold_streams(host, t.port, t.slow, s.streams)
        result = loadgen.summarize(sample)
        out["streams"] = {"count": s.streams, "ok": result["ok"], "errors": result["errors"],
                          "rss_idle_mb": round(idle / 2**20, 1), "rss_peak_mb": round(sampler.peak / 2**20, 1),
                          "seconds": round(sample.elapsed_s, 2)}
        log(f"  {t.name:<8} {s.streams} streams  ok {result['ok']}  RSS idle {idle / 2**20:.0f} MB, "
            f"peak {sampler.peak / 2**20:.0f} MB")
    return out


async def _interleaved(a: Target, b: Target, s: Settings, log: Callable[[str], None], concurrency: int,
                       which: str = "plain") -> dict[str, Any]:
    """`a` and `b` in alternating short turns (ABBA...), one ratio per round, and their median.

    This machine's speed drifts by tens of percent within a minute (a shared
    2-core VM), so two phases measured minutes apart can disagree by more
    than the effect being measured. Turns of a few seconds, alternated, see
    the same drift; the median of the per-round ratios is the number to quote.
    Both systems run pinned to the same CPU; the one not under load is idle.
    """
    host = "127.0.0.1"
    rounds: list[dict[str, Any]] = []
    for r in range(s.rounds):
        got: dict[str, dict[str, Any]] = {}
        for t in ((a, b) if r % 2 == 0 else (b, a)):
            reqs = t.plain if which == "plain" else t.stream
            got[t.name] = loadgen.summarize(await loadgen.closed_loop(host, t.port, reqs, concurrency, s.slice_s,
                                                                      min(s.warmup_s, 0.5)))
        ra, rb = got[a.name], got[b.name]
        rounds.append({a.name: {"rps": ra["rps"], "p50_ms": ra["latency_ms"]["p50"], "errors": ra["errors"]},
                       b.name: {"rps": rb["rps"], "p50_ms": rb["latency_ms"]["p50"], "errors": rb["errors"]},
                       "rps_ratio": round(ra["rps"] / rb["rps"], 4) if rb["rps"] else None,
                       "p50_diff_ms": round(ra["latency_ms"]["p50"] - rb["latency_ms"]["p50"], 4),
                       "ttfb_p50_diff_ms": round(ra["ttfb_ms"]["p50"] - rb["ttfb_ms"]["p50"], 4)})
    ratios = sorted(r["rps_ratio"] for r in rounds if r["rps_ratio"] is not None)
    diffs = sorted(r["p50_diff_ms"] for r in rounds)
    ttfb = sorted(r["ttfb_p50_diff_ms"] for r in rounds)
    out = {"a": a.name, "b": b.name, "concurrency": concurrency, "requests": which, "slice_s": s.slice_s,
           "rounds": rounds, "rps_ratio_median": round(statistics.median(ratios), 3) if ratios else None,
           "rps_ratio_range": [ratios[0], ratios[-1]] if ratios else None,
           "p50_diff_ms_median": round(statistics.median(diffs), 4) if diffs else None,
           "ttfb_p50_diff_ms_median": round(statistics.median(ttfb), 4) if ttfb else None}
    log(f"  interleaved {a.name}/{b.name} at {concurrency} ({which}): rps ratio median {out['rps_ratio_median']} "
        f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}); p50 difference median {out['p50_diff_ms_median']} ms, "
        f"TTFB p50 difference median {out['ttfb_p50_diff_ms_median']} ms")
    return out


class Bench:
    """One run: owns the work directory and every process it starts."""

    def __init__(self, settings: Settings, work: Path, log: Callable[[str], None]) -> None:
        self.s, self.work, self.log = settings, work, log
        self.procs: list[subprocess.Popen[bytes]] = []
        self.python = sys.executable

    def start(self, name: str, argv: list[str], cpus: set[int], env: dict[str, str] | None = None) -> \
            tuple[subprocess.Popen[bytes], Path]:
        log = self.work / f"{name}.log"
        proc = procs.spawn(argv, cpus, log, env, cwd=REPO)
        self.procs.append(proc)
        return proc, log

    def stop_all(self) -> None:
        for p in self.procs:
            procs.stop(p)
        self.procs.clear()

    async def upstream(self) -> tuple[int, str]:
        port = procs.free_port()
        proc, log = self.start("upstream", [self.python, "-m", "benchmarks.fake_upstream", "--port", str(port)],
                               procs.LOAD_CPUS)
        await procs.wait_listening(port, proc, 30, log)
        return port, f"http://127.0.0.1:{port}/v1"

    def decision(self, upstream: str) -> dict[str, Any]:
        cfg = org.write_config(self.work / "decision.yaml", self.work / "decision.db", upstream)
        argv = [self.python, "-m", "benchmarks.decision", "--config", str(cfg), "--n", str(self.s.decision_n)]
        proc, log = self.start("decision", argv, procs.SUT_CPUS)
        proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"the decision benchmark failed: {log.read_text()[-2000:]}")
        result: dict[str, Any] = orjson.loads(log.read_text().strip().splitlines()[-1])
        return result

    async def p402(self, upstream: str) -> Target:
        cfg = org.write_config(self.work / "p402.yaml", self.work / "p402.db", upstream)
        port = procs.free_port()
        proc, log = self.start("p402", [self.python, "-m", "p402.cli.main", "serve", "--config", str(cfg),
                                        "--port", str(port)], procs.SUT_CPUS)
        await procs.wait_listening(port, proc, 180, log)  # applying 2,000 keys takes a few seconds
        t = _target("p402", port, _p402_headers())
        t.pid = proc.pid
        return t

    async def bare(self, upstream_port: int) -> Target:
        port = procs.free_port()
        proc, log = self.start("bare", [self.python, "-m", "benchmarks.bare_proxy", "--port", str(port),
                                        "--upstream", f"http://127.0.0.1:{upstream_port}"], procs.SUT_CPUS)
        await procs.wait_listening(port, proc, 30, log)
        t = _target("bare", port, _p402_headers())
        t.pid = proc.pid
        return t

    async def litellm(self, upstream: str) -> Target:
        cfg = litellm_setup.write_litellm_config(self.work / "litellm.yaml", upstream)
        port = procs.free_port()
        proc, log = self.start("litellm", litellm_setup.litellm_argv(cfg, port), procs.SUT_CPUS,
                               litellm_setup.LITELLM_ENV)
        await procs.wait_listening(port, proc, 180, log)
        t = _target("litellm", port, [[("Authorization", f"Bearer {litellm_setup.MASTER_KEY}")]])
        t.pid = proc.pid
        return t


def _stop(bench: Bench, target: Target) -> None:
    for p in list(bench.procs):
        if p.pid == target.pid:
            procs.stop(p)
            bench.procs.remove(p)


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": len(procs.ALL_CPUS), "memory_mb": mem, "kernel": platform.release(),
            "python": platform.python_version(), "sut_cpus": sorted(procs.SUT_CPUS),
            "load_cpus": sorted(procs.LOAD_CPUS), "python_loop_ms": _calibrate()}


def _calibrate() -> float:
    """Milliseconds for a fixed pure-Python loop (best of 5): how fast this machine runs
    Python today, so absolute figures of runs on different machines can be compared."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 1)


async def run(settings: Settings, out: Path, log: Callable[[str], None] = print,
              with_litellm: bool = True) -> dict[str, Any]:
    """The whole run; writes `latest.json` and `latest.png` into `out` and returns the result."""
    procs.pin_self(procs.LOAD_CPUS)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "settings": asdict(settings), "machine": _machine(), "targets": {}}
    litellm_note = "skipped (--no-litellm)"
    litellm_ok = False
    if with_litellm:
        log(f"LiteLLM: preparing {litellm_setup.VENV} (litellm[proxy]=={litellm_setup.LITELLM_VERSION}) ...")
        litellm_ok, litellm_note = await asyncio.to_thread(litellm_setup.ensure_litellm)
        log(f"LiteLLM: {litellm_note}")
    result["litellm"] = {"available": litellm_ok, "detail": litellm_note, "version": litellm_setup.LITELLM_VERSION}
    with tempfile.TemporaryDirectory(prefix="p402-bench-") as tmp:
        bench = Bench(settings, Path(tmp), log)
        try:
            up_port, upstream = await bench.upstream()
            log("decision micro-benchmark (authenticate -> decide -> reserve -> ledger row) ...")
            result["decision"] = await asyncio.to_thread(bench.decision, upstream)
            d = result["decision"]["decision_us"]
            log(f"  decision p50 {d['p50']} us, p99 {d['p99']} us, p999 {d['p999']} us")
            direct = _target("direct", up_port, _p402_headers())
            result["targets"]["direct"] = await _phases(direct, settings, log, memory=False)
            starters: list[tuple[str, Callable[[], Awaitable[Target]]]] = [
                ("p402", lambda: bench.p402(upstream)), ("bare", lambda: bench.bare(up_port))]
            if litellm_ok:
                starters.append(("litellm", lambda: bench.litellm(upstream)))
            kept: dict[str, Target] = {}
            for name, starter in starters:
                try:
                    target = await starter()
                except RuntimeError as exc:
                    log(f"{name}: could not start: {exc}")
                    result["targets"][name] = {"error": str(exc)}
                    continue
                result["targets"][name] = await _phases(target, settings, log)
                if name in ("p402", "bare"):
                    kept[name] = target  # alive (and idle) for the interleaved rounds below
                    continue
                _stop(bench, target)
            if "p402" in kept:
                log("interleaved rounds (the headline ratios; see docs/benchmarks.md) ...")
                inter: dict[str, Any] = {}
                if "bare" in kept:
                    inter["throughput_vs_bare"] = await _interleaved(kept["p402"], kept["bare"], settings, log, 64)
                procs.move(kept["p402"].pid or 0, procs.LOAD_CPUS)  # latency phases share the load's core, as above
                inter["added_c1"] = await _interleaved(kept["p402"], direct, settings, log, 1)
                inter["added_c1_stream"] = await _interleaved(kept["p402"], direct, settings, log, 1, "stream")
                procs.move(kept["p402"].pid or 0, procs.SUT_CPUS)
                result["interleaved"] = inter
        finally:
            bench.stop_all()
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["summary"] = report.summary(result)
    (out / "latest.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    report.plot(result, out / "latest.png")
    log(report.table(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="p402 overhead benchmark (see docs/benchmarks.md)")
    parser.add_argument("--quick", action="store_true", help="short phases (1.5 s): a run of about 2 minutes")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="where latest.json/png go")
    parser.add_argument("--no-litellm", action="store_true", help="do not install or measure LiteLLM")
    args = parser.parse_args(argv)
    import uvloop
    settings = Settings.quick() if args.quick else Settings()
    uvloop.run(run(settings, Path(args.out), with_litellm=not args.no_litellm))
    return 0


if __name__ == "__main__":
    sys.exit(main())
