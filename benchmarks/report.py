"""Turning a run into the summary, the table of ratios and the plot.

Added latency is a system's percentile minus the same percentile of the fake
upstream called directly, in the same run. Ratios are p402's number divided
by the other system's; for latency lower is better, for throughput higher is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["summary", "table", "plot", "TARGETS", "SYSTEMS"]

SYSTEMS = ("direct", "p402", "bare", "litellm")
PROXIES = ("p402", "bare", "litellm")
# (key, description, limit, unit, "max" = value must be <= limit | "min" = >=)
TARGETS = (
    ("decision_p50_us", "decision p50", 50.0, "us", "max"),
    ("decision_p99_us", "decision p99", 500.0, "us", "max"),
    ("added_c1_p50_ms", "added latency, concurrency 1, p50", 0.6, "ms", "max"),
    ("added_c1_p99_ms", "added latency, concurrency 1, p99", 2.0, "ms", "max"),
    ("added_ttfb_p50_ms", "streaming TTFB overhead p50", 1.0, "ms", "max"),
    ("throughput_vs_bare", "throughput vs bare proxy (64 concurrent)", 0.6, "x", "min"),
    ("throughput_vs_litellm", "throughput vs LiteLLM (64 concurrent)", 5.0, "x", "min"),
    ("rss_1000_streams_mb", "peak RSS at 1,000 streams", 200.0, "MB", "max"),
)


def _get(result: dict[str, Any], system: str, phase: str, metric: str, q: str) -> float | None:
    try:
        return float(result["targets"][system][phase][metric][q])
    except (KeyError, TypeError):
        return None


def _rps(result: dict[str, Any], system: str, phase: str) -> float | None:
    try:
        return float(result["targets"][system][phase]["rps"])
    except (KeyError, TypeError):
        return None


def _added(result: dict[str, Any], system: str, phase: str, metric: str, q: str) -> float | None:
    mine, base = _get(result, system, phase, metric, q), _get(result, "direct", phase, metric, q)
    return None if mine is None or base is None else round(mine - base, 4)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 3)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Added latencies, throughputs, memory, ratios and the issue's targets, met or not."""
    added: dict[str, dict[str, float | None]] = {}
    for s in PROXIES:
        added[s] = {"c1_p50_ms": _added(result, s, "c1", "latency_ms", "p50"),
                    "c1_p99_ms": _added(result, s, "c1", "latency_ms", "p99"),
                    "c1_ttfb_p50_ms": _added(result, s, "c1_stream", "ttfb_ms", "p50"),
                    "c1_ttfb_p99_ms": _added(result, s, "c1_stream", "ttfb_ms", "p99"),
                    "paced_p50_ms": _added(result, s, "paced", "latency_ms", "p50"),
                    "paced_p99_ms": _added(result, s, "paced", "latency_ms", "p99"),
                    "paced_ttfb_p50_ms": _added(result, s, "paced_stream", "ttfb_ms", "p50")}
    rps = {s: {p: _rps(result, s, p) for p in ("sat64", "sat64_stream", "sat256", "sat256_stream")}
           for s in SYSTEMS}
    memory = {s: (result["targets"].get(s) or {}).get("streams", {}).get("rss_peak_mb") for s in PROXIES}
    decision = result.get("decision", {}).get("decision_us", {})
    inter = result.get("interleaved") or {}
    # Where the run has interleaved rounds, they judge the target: phases minutes apart see
    # this machine's drift, alternating turns do not (see benchmarks.run._interleaved).
    vs_bare = (inter.get("throughput_vs_bare") or {}).get("rps_ratio_median")
    added_c1 = (inter.get("added_c1") or {}).get("p50_diff_ms_median")
    added_ttfb = (inter.get("added_c1_stream") or {}).get("ttfb_p50_diff_ms_median")
    values = {"decision_p50_us": decision.get("p50"), "decision_p99_us": decision.get("p99"),
              "added_c1_p50_ms": added_c1 if added_c1 is not None else added["p402"]["c1_p50_ms"],
              "added_c1_p99_ms": added["p402"]["c1_p99_ms"],
              "added_ttfb_p50_ms": added_ttfb if added_ttfb is not None else added["p402"]["c1_ttfb_p50_ms"],
              "throughput_vs_bare": vs_bare if vs_bare is not None else _ratio(rps["p402"]["sat64"], rps["bare"]["sat64"]),
              "throughput_vs_litellm": _ratio(rps["p402"]["sat64"], rps["litellm"]["sat64"]),
              "rss_1000_streams_mb": memory["p402"]}
    targets = []
    for key, text, limit, unit, sense in TARGETS:
        v = values[key]
        met = None if v is None else (v <= limit if sense == "max" else v >= limit)
        targets.append({"key": key, "target": f"{'<=' if sense == 'max' else '>='} {limit:g} {unit}", "what": text,
                        "value": v, "met": met})
    return {"added": added, "rps": rps, "rss_peak_mb": memory, "targets": targets}


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if abs(v) < 100 else f"{v:.0f}"


def table(result: dict[str, Any]) -> str:
    """The printed table: one row per measure, the systems, then p402's ratios to each."""
    rows: list[tuple[str, dict[str, float | None], bool]] = []  # label, values per system, lower is better

    def lat(label: str, phase: str, metric: str, q: str) -> None:
        rows.append((label, {s: _get(result, s, phase, metric, q) for s in SYSTEMS}, True))

    lat("latency c1 p50 (ms)", "c1", "latency_ms", "p50")
    lat("latency c1 p99 (ms)", "c1", "latency_ms", "p99")
    lat("stream TTFB c1 p50 (ms)", "c1_stream", "ttfb_ms", "p50")
    lat("stream TTFB c1 p99 (ms)", "c1_stream", "ttfb_ms", "p99")
    lat("latency paced p50 (ms)", "paced", "latency_ms", "p50")
    lat("latency paced p99 (ms)", "paced", "latency_ms", "p99")
    lat("stream TTFB paced p50 (ms)", "paced_stream", "ttfb_ms", "p50")
    s = summary(result)
    for key, label in (("c1_p50_ms", "added c1 p50 (ms)"), ("c1_p99_ms", "added c1 p99 (ms)"),
                       ("c1_ttfb_p50_ms", "added TTFB c1 p50 (ms)"), ("paced_p50_ms", "added paced p50 (ms)")):
        rows.append((label, {p: s["added"][p][key] for p in PROXIES}, True))
    for phase, label in (("sat64", "throughput 64 conc (req/s)"), ("sat256", "throughput 256 conc (req/s)"),
                         ("sat64_stream", "stream thrpt 64 (req/s)"), ("sat256_stream", "stream thrpt 256 (req/s)")):
        rows.append((label, {p: s["rps"][p][phase] for p in SYSTEMS}, False))
    rows.append(("peak RSS 1,000 streams (MB)", dict(s["rss_peak_mb"]), True))
    head = f"{'':<30}" + "".join(f"{n:>10}" for n in SYSTEMS) + f"{'p402/direct':>13}{'p402/bare':>11}{'p402/litellm':>14}"
    lines = [head, "-" * len(head)]
    for label, vals, _ in rows:
        p = vals.get("p402")
        lines.append(f"{label:<30}" + "".join(f"{_fmt(vals.get(n)):>10}" for n in SYSTEMS)
                     + f"{_fmt(_ratio(p, vals.get('direct')), 2):>13}{_fmt(_ratio(p, vals.get('bare')), 2):>11}"
                     + f"{_fmt(_ratio(p, vals.get('litellm')), 2):>14}")
    lines.append("")
    m = result.get("machine", {})
    lines.append(f"machine: {m.get('cores')} cores, {m.get('cpu')}; a fixed pure-Python loop took "
                 f"{m.get('python_loop_ms')} ms (compare this across runs before comparing absolute figures)")
    d = result.get("decision", {}).get("decision_us", {})
    lines.append(f"decision (authenticate -> decide -> reserve -> ledger row): p50 {d.get('p50')} us, "
                 f"p99 {d.get('p99')} us, p999 {d.get('p999')} us")
    for key, field, what in (("throughput_vs_bare", "rps_ratio", "p402/bare throughput at 64"),
                             ("added_c1", "p50_diff_ms", "p402 - direct p50 at c1"),
                             ("added_c1_stream", "ttfb_p50_diff_ms", "p402 - direct stream TTFB p50 at c1")):
        i = (result.get("interleaved") or {}).get(key)
        if i:
            rounds = ", ".join(f"{r[field]:.3f}" for r in i["rounds"])
            lines.append(f"interleaved {what}: median {i[field + '_median']} over {len(i['rounds'])} rounds ({rounds})")
    lines.append("targets:")
    for t in s["targets"]:
        mark = "n/a " if t["met"] is None else ("MET " if t["met"] else "MISS")
        lines.append(f"  [{mark}] {t['what']}: {t['value']} (target {t['target']})")
    if not result.get("litellm", {}).get("available"):
        lines.append(f"LiteLLM unavailable: {result.get('litellm', {}).get('detail')}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Latency percentiles (log scale) and throughput, one colour per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [s for s in SYSTEMS if isinstance(result["targets"].get(s), dict) and "c1" in result["targets"][s]]
    colours = {"direct": "#888888", "p402": "#1f77b4", "bare": "#2ca02c", "litellm": "#d62728"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=90)
    groups = [("c1 p50", "c1", "latency_ms", "p50"), ("c1 p99", "c1", "latency_ms", "p99"),
              ("c1 p99.9", "c1", "latency_ms", "p999"), ("TTFB p50", "c1_stream", "ttfb_ms", "p50"),
              ("TTFB p99", "c1_stream", "ttfb_ms", "p99"), ("paced p50", "paced", "latency_ms", "p50"),
              ("paced p99", "paced", "latency_ms", "p99")]
    width = 0.8 / max(len(systems), 1)
    for i, s in enumerate(systems):
        xs = [g + i * width for g in range(len(groups))]
        ys = [max(_get(result, s, phase, metric, q) or 0.0, 0.001) for _, phase, metric, q in groups]
        ax1.bar(xs, ys, width, label=s, color=colours[s])
    ax1.set_yscale("log")
    ax1.set_xticks([g + width * (len(systems) - 1) / 2 for g in range(len(groups))])
    ax1.set_xticklabels([g[0] for g in groups], rotation=30, ha="right", fontsize=8)
    ax1.set_ylabel("ms (log scale)")
    ax1.set_title("Latency at concurrency 1 and at a paced rate")
    ax1.legend(fontsize=8)
    phases = [("64", "sat64"), ("256", "sat256"), ("64 stream", "sat64_stream"), ("256 stream", "sat256_stream")]
    proxies = [s for s in systems if s != "direct"]
    width = 0.8 / max(len(proxies), 1)
    for i, s in enumerate(proxies):
        xs = [g + i * width for g in range(len(phases))]
        ax2.bar(xs, [_rps(result, s, p) or 0.0 for _, p in phases], width, label=s, color=colours[s])
    ax2.set_xticks([g + width * (len(proxies) - 1) / 2 for g in range(len(phases))])
    ax2.set_xticklabels([p[0] for p in phases], fontsize=8)
    ax2.set_ylabel("requests / s (one core)")
    ax2.set_title("Throughput at saturation (concurrent connections)")
    ax2.legend(fontsize=8)
    fig.suptitle(f"p402 bench {result.get('started', '')}: {result.get('machine', {}).get('cores')} cores, "
                 f"{result.get('machine', {}).get('cpu', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
