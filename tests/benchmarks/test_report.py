"""The summary's arithmetic, the table and the plot, on a made-up run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import report


def _phase(p50: float, p99: float, rps: float, ttfb50: float | None = None) -> dict[str, Any]:
    t = ttfb50 if ttfb50 is not None else p50
    return {"rps": rps, "ok": 100, "errors": 0, "latency_ms": {"p50": p50, "p90": p99, "p99": p99, "p999": p99},
            "ttfb_ms": {"p50": t, "p90": p99, "p99": p99, "p999": p99}}


def _system(scale: float, rps: float, rss: float | None = None) -> dict[str, Any]:
    out = {name: _phase(0.1 * scale, 0.3 * scale, rps, 0.05 * scale) for name in
           ("c1", "c1_stream", "paced", "paced_stream")}
    out.update({name: _phase(10.0, 20.0, rps) for name in ("sat64", "sat64_stream", "sat256", "sat256_stream")})
    if rss is not None:
        out["streams"] = {"count": 1000, "ok": 1000, "errors": 0, "rss_idle_mb": rss / 2, "rss_peak_mb": rss}
    return out


RESULT: dict[str, Any] = {
    "started": "2026-01-01T00:00:00Z", "machine": {"cores": 2, "cpu": "test"},
    "decision": {"decision_us": {"p50": 40.0, "p99": 600.0, "p999": 900.0}},
    "litellm": {"available": True},
    "targets": {"direct": _system(1, 10_000), "p402": _system(5, 3_000, 150.0), "bare": _system(2, 4_000, 50.0),
                "litellm": _system(50, 100, 400.0)},
}


def test_added_latency_is_the_difference_to_calling_the_upstream_directly() -> None:
    s = report.summary(RESULT)
    assert s["added"]["p402"]["c1_p50_ms"] == 0.4  # 0.5 - 0.1
    assert s["added"]["bare"]["c1_p99_ms"] == 0.3  # 0.6 - 0.3
    assert s["added"]["p402"]["c1_ttfb_p50_ms"] == 0.2  # 0.25 - 0.05


def test_targets_are_judged_in_the_right_direction() -> None:
    met = {t["key"]: t["met"] for t in report.summary(RESULT)["targets"]}
    assert met["decision_p50_us"] is True and met["decision_p99_us"] is False
    assert met["throughput_vs_bare"] is True  # 3000 / 4000 = 0.75 >= 0.6
    assert met["throughput_vs_litellm"] is True  # 30x
    assert met["rss_1000_streams_mb"] is True


def test_a_missing_litellm_leaves_its_ratios_empty_not_wrong() -> None:
    partial = {**RESULT, "litellm": {"available": False, "detail": "pip failed"},
               "targets": {k: v for k, v in RESULT["targets"].items() if k != "litellm"}}
    met = {t["key"]: t["met"] for t in report.summary(partial)["targets"]}
    assert met["throughput_vs_litellm"] is None
    text = report.table(partial)
    assert "LiteLLM unavailable: pip failed" in text and "[n/a ] throughput vs LiteLLM" in text


def test_the_table_shows_ratios_and_the_plot_is_a_png(tmp_path: Path) -> None:
    text = report.table(RESULT)
    row = next(line for line in text.splitlines() if line.startswith("throughput 64 conc"))
    assert row.split()[-3:] == ["0.30", "0.75", "30.00"]  # p402/direct, p402/bare, p402/litellm
    report.plot(RESULT, tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interleaved_rounds_judge_the_ratio_targets_when_the_run_has_them() -> None:
    def rnd(ratio: float, diff: float, ttfb: float = 0.0) -> dict[str, Any]:
        return {"rps_ratio": ratio, "p50_diff_ms": diff, "ttfb_p50_diff_ms": ttfb}
    inter = {"throughput_vs_bare": {"rounds": [rnd(0.5, 0), rnd(0.55, 0), rnd(0.9, 0)], "rps_ratio_median": 0.55},
             "added_c1": {"rounds": [rnd(1, 0.7), rnd(1, 0.5), rnd(1, 0.55)], "p50_diff_ms_median": 0.55},
             "added_c1_stream": {"rounds": [rnd(1, 0, 1.2), rnd(1, 0, 1.1)], "ttfb_p50_diff_ms_median": 1.15}}
    s = report.summary({**RESULT, "interleaved": inter})
    by_key = {t["key"]: t for t in s["targets"]}
    # The sequential phases alone would say 0.75 (met) and 0.4 ms; the interleaved medians rule.
    assert by_key["throughput_vs_bare"]["value"] == 0.55 and by_key["throughput_vs_bare"]["met"] is False
    assert by_key["added_c1_p50_ms"]["value"] == 0.55 and by_key["added_c1_p50_ms"]["met"] is True
    assert by_key["added_ttfb_p50_ms"]["value"] == 1.15 and by_key["added_ttfb_p50_ms"]["met"] is False
    text = report.table({**RESULT, "interleaved": inter})
    assert "interleaved p402/bare throughput at 64: median 0.55 over 3 rounds (0.500, 0.550, 0.900)" in text
    assert "interleaved p402 - direct stream TTFB p50 at c1: median 1.15 over 2 rounds (1.200, 1.100)" in text
