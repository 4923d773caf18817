"""Two checkouts of feedsvc side by side in one run: cold start, warm restart and
one-article refreshes at one corpus size, with Hugo between them.

    python bench/compare.py --base ../feedsvc-before [--size 10000] [--rounds 3] [--edits 9]

Each round runs, in turn (which checkout goes first alternates between rounds): a
cold start (bench/coldstart.py, fresh state directory), a warm restart on its state
directory, and a cold start with `--edits` timed refreshes (--incremental, its own
state directory: the refresh's share is of that build's CPU with its cache writes, as
bench/run.py gives it), for each checkout; then Hugo.  Each checkout runs its own
bench/coldstart.py with its own package first on PYTHONPATH, so the same interpreter
and libraries run both.  Reports medians, the
per-pair ratios this/base, the ratios to Hugo, and the load average after each round
(the machine is shared: only what ran side by side is compared).  Writes
bench/out/compare.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402

FIGURES = {"cold_s": "cold start s", "cold_cpu_s": "cold build CPU s",
           "cold_mb": "cold peak MB", "warm_s": "warm restart s",
           "refresh_ms": "refresh CPU ms", "refresh_pct": "refresh % of build CPU"}


def start(tree: Path, data: Path, state: Path, edits: int) -> dict:
    """A cold start (with `edits` refreshes when > 0) of the checkout at `tree`."""
    run.warm_page_cache(data)
    cmd = [run.PY, str(tree / "bench" / "coldstart.py"), "--data", str(data),
           "--state", str(state)]
    if edits:
        cmd += ["--incremental", str(edits)]
        (data / ".bench-dirty").write_text("an edit may be in progress\n")
    r = run.run_measured(cmd, cwd=tree, ready_line="READY",
                         env={"PYTHONPATH": str(tree)})
    if r["rc"] != 0 or r["ready_s"] is None:
        raise RuntimeError(f"{tree}: coldstart.py failed ({r['rc']}): {r['stderr']}")
    (data / ".bench-dirty").unlink(missing_ok=True)
    detail = json.loads(r["stdout"].strip().splitlines()[-1])
    return {**detail, "ready_s": r["ready_s"],
            "peak_kb": max(detail["rss_kb_at_ready"], r["tree_rss_kb"])}


def measure(tree: Path, data: Path, name: str, edits: int) -> dict:
    """A cold start, a warm restart on its state, and a cold start with refreshes (its
    own: the edits must not reach the warm restart)."""
    state = run.fresh(run.OUT / "state" / f"compare-{name}")
    cold = start(tree, data, state, 0)
    warm = start(tree, data, state, 0)
    edited = start(tree, data, run.fresh(run.OUT / "state" / f"compare-{name}-edits"), edits)
    full = edited["build_cpu_s"] + edited["cache_write_cpu_s"]
    refresh = statistics.median(x["cpu_s"] for x in edited["incremental"]["runs"])
    return {"cold_s": cold["ready_s"], "cold_cpu_s": cold["build_cpu_s"],
            "cold_mb": cold["peak_kb"] / 1024, "warm_s": warm["ready_s"],
            "refresh_ms": refresh * 1000, "refresh_pct": 100 * refresh / full,
            "rebuilt": edited["incremental"]["runs"][0]["rebuilt"]}


def compare(base: Path, size: int, rounds: int, edits: int) -> dict:
    data = run.corpus(size)
    trees = {"base": base.resolve(), "this": run.ROOT}
    res: dict = {"size": size, "edits": edits, "loadavg": [os.getloadavg()[0]],
                 "runs": {"base": [], "this": [], "hugo": []}}
    for i in range(rounds):
        for name in (["base", "this"] if i % 2 == 0 else ["this", "base"]):
            run.log(f"compare, {size} articles, round {i + 1}: {name}")
            res["runs"][name].append(measure(trees[name], data, name, edits))
        hugo = run.hugo_build(data, size)
        if hugo:
            res["runs"]["hugo"].append({"wall_s": hugo["wall_s"],
                                        "mb": hugo["peak_rss_kb"] / 1024})
        res["loadavg"].append(os.getloadavg()[0])
    return res


def table(res: dict) -> list[str]:
    runs = res["runs"]
    med = statistics.median
    lines = [f"{res['size']:,} articles, {len(runs['base'])} rounds (base and this taking "
             f"turns), {res['edits']} refreshes a run; load average "
             f"{', '.join('%.1f' % x for x in res['loadavg'])}.", "",
             "| figure | base (median) | this (median) | this/base per pair | this/Hugo |",
             "|---|---:|---:|---|---:|"]
    hugo_s = med(h["wall_s"] for h in runs["hugo"]) if runs["hugo"] else None
    hugo_mb = med(h["mb"] for h in runs["hugo"]) if runs["hugo"] else None
    for key, label in FIGURES.items():
        b, t = med(r[key] for r in runs["base"]), med(r[key] for r in runs["this"])
        pairs = ", ".join("%.2f" % (x[key] / y[key]) for x, y in
                          zip(runs["this"], runs["base"], strict=True))
        ref = {"cold_s": hugo_s, "warm_s": hugo_s, "cold_mb": hugo_mb}.get(key)
        vs = f"{t / ref:.2f}x" if ref else ""
        lines.append(f"| {label} | {b:.3g} | {t:.3g} | {pairs} | {vs} |")
    if hugo_s:
        lines.append(f"| Hugo | {hugo_s:.3g} s, {hugo_mb:.0f} MB | | | |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, type=Path, help="the other checkout")
    ap.add_argument("--size", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--edits", type=int, default=9, help="refreshes timed per cold start")
    a = ap.parse_args()
    (run.OUT / "state").mkdir(parents=True, exist_ok=True)
    res = compare(a.base, a.size, a.rounds, a.edits)
    (run.OUT / "compare.json").write_text(json.dumps(res, indent=1))
    print("\n".join(table(res)))


if __name__ == "__main__":
    main()
