"""Each of feedsvc's speed tricks on and off, side by side in one run.

    python bench/tricks.py [--size 10000] [--rounds 3] [--edits 3] [--tricks plain,kept]

Every run is a cold start of bench/coldstart.py on a fresh state directory, then
`--edits` one-article refreshes (the title of the newest article), so each run gives
both figures a trick may be for: the cold build (seconds to servable, CPU seconds of
the build and of its cache writes, peak memory) and a refresh's CPU.  For each trick,
each round runs it on and off back to back (which goes first alternates between
rounds), so the machine's other load falls on both alike; the ratio off/on is taken
per pair, and the median over rounds is reported.  `coldstart.OFF` says how each trick
is turned off.  Writes bench/out/tricks.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import coldstart  # noqa: E402
import run  # noqa: E402

# trick -> (what it is, the figure it is for: a key of `measure`'s result)
TRICKS = {
    "plain": ("content._plain: bodies without raw HTML skip lxml", "cpu_s"),
    "held": ("cache.Cache.held: a first build's cache writes wait", "ready_s"),
    "freeze": ("workers.FREEZE_BEFORE_FORK: gc.freeze before forking", "rss_mb"),
    "fork": ("workers._new_pool: fork rather than spawn", "ready_s"),
    "splice": ("splice.packed: a feed written again keeps its unchanged entries",
               "refresh_ms"),
    "kept": ("splice.HELD: the entries of the feeds spliced last stay cut", "refresh_ms"),
    "recent": ("bodies.RECENT_BODIES: the last bodies asked for stay in memory",
               "refresh_ms"),
    "yaml": ("safeyaml.PLAIN_FIRST: plain front matter read without PyYAML", "cpu_s"),
    "orjson": ("feeds.JsonFeedWriter: orjson, not json (the same bytes)", "cpu_s"),
}
FIGURES = {"ready_s": "s to servable", "cpu_s": "build CPU s", "rss_mb": "peak MB",
           "refresh_ms": "refresh CPU ms"}


def measure(data: Path, n: int, off: tuple[str, ...], edits: int) -> dict:
    """One cold start (and `edits` refreshes) with the tricks in `off` turned off."""
    r = run.feedsvc_start(data, run.fresh(run.OUT / "state" / f"tricks-{n}"),
                          incremental=edits, off=off)
    refresh = [x["cpu_s"] for x in r["incremental"]["runs"]]
    return {"ready_s": r["ready_s"], "cpu_s": r["build_cpu_s"] + r["cache_write_cpu_s"],
            "rss_mb": r["peak_rss_kb"] / 1024, "refresh_ms": statistics.median(refresh) * 1000,
            "documents": r["documents"], "renders": r["renders"]}


def tricks(size: int, rounds: int, edits: int, names: list[str]) -> dict:
    data = run.corpus(size)
    load = [os.getloadavg()]
    pairs: dict[str, list[dict]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names:
            order = [False, True] if i % 2 == 0 else [True, False]
            got = {}
            for off in order:
                run.log(f"tricks, {size} articles, round {i + 1}: {name} "
                        f"{'off' if off else 'on'}")
                got[off] = measure(data, size, (name,) if off else (), edits)
            pairs[name].append({"on": got[False], "off": got[True]})
        load.append(os.getloadavg())
    return {"size": size, "rounds": rounds, "edits": edits, "loadavg": load, "pairs": pairs}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(res: dict) -> list[str]:
    """The Markdown table: per trick, medians of each figure on and off, and the median
    of the per-pair ratios off/on (above 1: the trick saves that much)."""
    cols = list(FIGURES)
    lines = [f"Tricks, {res['size']:,} articles, {res['rounds']} interleaved on/off pairs "
             f"each, {res['edits']} refreshes a run; load average over the run "
             f"{', '.join('%.1f' % la[0] for la in res['loadavg'])}.", "",
             "| trick (off: `bench/coldstart.py --off NAME`) | figure it is for | "
             + " | ".join(f"{FIGURES[c]} on / off (ratio)" for c in cols) + " |",
             "|---|---|" + "---:|" * len(cols)]
    for name, pairs in res["pairs"].items():
        what, key = TRICKS[name]
        cells = []
        for c in cols:
            on = _median([p["on"][c] for p in pairs])
            off = _median([p["off"][c] for p in pairs])
            ratio = _median([p["off"][c] / p["on"][c] for p in pairs if p["on"][c]])
            cell = f"{on:.3g} / {off:.3g} ({ratio:.2f}x)"
            cells.append(f"**{cell}**" if c == key else cell)
        lines.append(f"| `{name}`: {what} | {FIGURES[key]} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--edits", type=int, default=3, help="refreshes timed per run")
    ap.add_argument("--tricks", default=",".join(TRICKS),
                    help=f"comma list of: {', '.join(TRICKS)}")
    a = ap.parse_args()
    names = [n for n in a.tricks.split(",") if n]
    unknown = set(names) - set(TRICKS) - set(coldstart.OFF)
    if unknown:
        sys.exit(f"unknown tricks: {', '.join(sorted(unknown))}")
    (run.OUT / "state").mkdir(parents=True, exist_ok=True)
    res = tricks(a.size, a.rounds, a.edits, names)
    (run.OUT / "tricks.json").write_text(json.dumps(res, indent=1))
    print("\n".join(table(res)))


if __name__ == "__main__":
    main()
