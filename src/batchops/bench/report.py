"""A benchmark's results: merged from its workers, summarised, written (JSON, Parquet),
drawn (PNG), compared (`bench compare`) and shown again (`bench show`).

The Parquet file (`--out`) has one row per (kind, op, second):
- kind `segment`: `op`, `second`, `width_s`, `ops`, `bytes`, `errors`, `p50_ms`,
  `p90_ms`, `p99_ms` (one second of one operation, all workers together; `width_s` is 1
  but for the last, partial second, so that ops / width_s is a rate);
- kind `histogram`: `op` and `histogram`, the merged latency histogram of the whole run
  (bytes of `batchops._histogram.Histogram.to_bytes`);
- kind `run`: `run`, the summary document as JSON (what `--json` prints).
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from batchops._histogram import Histogram
from batchops.model.errors import SpecError

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))
#: What the client CPU figure counts (printed with it: see `merge`).
CPU_COUNTED = ("user + sys of the workers over their measured seconds and of the driver "
               "over the same window")
_MIB = 1024 * 1024


def _latency(h: Histogram) -> dict[str, float]:
    out = {"min": h.min / 1e6, "avg": h.mean() / 1e6}
    out.update({name: h.percentile(q) / 1e6 for name, q in PERCENTILES})
    out["max"] = h.max / 1e6
    return {k: round(v, 4) for k, v in out.items()}


def merge(spec: dict[str, Any], results: list[dict[str, Any]],
          driver_cpu: dict[str, float] | None = None) -> dict[str, Any]:
    """The run's summary document from its workers' results and the driver's CPU time
    over the measured window (`{"user": s, "sys": s}`).

    Client CPU (`cpu`): user + sys of the process tree, that is every worker over its
    measured seconds plus the driver (the `batchops bench` process, which reads the
    workers' pipes and draws the display) from the first worker's start of measuring
    to the last one's end; `ms_per_op` is that total over the operations measured.
    Preparation, warm-up and clean-up are not counted."""
    hists: dict[str, Histogram] = {}
    ttfbs: dict[str, Histogram] = {}
    totals: dict[str, list[int]] = {}
    errors: dict[str, Counter[str]] = {}
    seconds: dict[tuple[str, int], list[Any]] = {}
    for res in results:
        for name, kind in res["kinds"].items():
            hists.setdefault(name, Histogram()).merge(Histogram.from_bytes(
                bytes.fromhex(kind["hist"])))
            ttfbs.setdefault(name, Histogram()).merge(Histogram.from_bytes(
                bytes.fromhex(kind["ttfb"])))
            t = totals.setdefault(name, [0, 0, 0])
            t[0] += kind["ops"]
            t[1] += kind["bytes"]
            t[2] += kind.get("retries", 0)
            errors.setdefault(name, Counter()).update(kind["errors"])
            for s, (ops, nbytes, errs, h) in kind["seconds"].items():
                seg = seconds.setdefault((name, int(s)), [0, 0, 0, Histogram()])
                seg[0] += ops
                seg[1] += nbytes
                seg[2] += errs
                seg[3].merge(Histogram.from_bytes(bytes.fromhex(h)))
    elapsed = max((r["elapsed"] for r in results), default=0.0) or 1e-9
    workers_user = sum(r["cpu"]["user"] for r in results)
    workers_sys = sum(r["cpu"]["sys"] for r in results)
    driver = driver_cpu or {"user": 0.0, "sys": 0.0}
    cpu_user = workers_user + driver["user"]
    cpu_sys = workers_sys + driver["sys"]
    all_ops = sum(t[0] for t in totals.values())
    operations: dict[str, Any] = {}
    for name in sorted(totals):
        ops, nbytes, retries = totals[name]
        entry: dict[str, Any] = {
            "ops": ops, "retries": retries, "ops_per_s": round(ops / elapsed, 2),
            "mib_per_s": round(nbytes / elapsed / _MIB, 3), "bytes": nbytes,
            "errors": dict(errors[name]), "latency_ms": _latency(hists[name])}
        if ttfbs[name].count:
            entry["ttfb_ms"] = _latency(ttfbs[name])
        operations[name] = entry
    segments = []
    for (name, s), (ops, nbytes, errs, h) in sorted(seconds.items(), key=lambda x: (x[0][1],
                                                                                   x[0][0])):
        segments.append({"second": s, "width_s": round(max(1e-3, min(1.0, elapsed - s)), 3),
                         "op": name, "ops": ops, "bytes": nbytes, "errors": errs,
                         "p50_ms": round(h.percentile(50) / 1e6, 4),
                         "p90_ms": round(h.percentile(90) / 1e6, 4),
                         "p99_ms": round(h.percentile(99) / 1e6, 4)})
    import os

    cores = os.cpu_count() or 1
    busy = (cpu_user + cpu_sys) / elapsed
    workers_busy = (workers_user + workers_sys) / elapsed
    return {
        "Batchops": "bench", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec": spec, "elapsed_s": round(elapsed, 3),
        "prepare": {"objects": sum(r["prepared"] for r in results),
                    "seconds": round(max((r["prepare_seconds"] for r in results),
                                         default=0.0), 3)},
        "cleaned_objects": sum(r["cleaned"] for r in results),
        "prefixes": [r["prefix"] for r in results],
        "workers": [{"worker": r["worker"],
                     "ops": sum(k["ops"] for k in r["kinds"].values()),
                     "ops_per_s": round(sum(k["ops"] for k in r["kinds"].values())
                                        / max(r["elapsed"], 1e-9), 2),
                     "errors": sum(sum(k["errors"].values()) for k in r["kinds"].values()),
                     "cpu_s": round(r["cpu"]["user"] + r["cpu"]["sys"], 3)}
                    for r in sorted(results, key=lambda r: r["worker"])],
        "cpu": {"user_s": round(cpu_user, 3), "sys_s": round(cpu_sys, 3),
                "workers_s": round(workers_user + workers_sys, 3),
                "driver_s": round(driver["user"] + driver["sys"], 3),
                "ms_per_op": round((cpu_user + cpu_sys) * 1000 / all_ops, 4) if all_ops else
                None, "cores_busy": round(busy, 2), "cores": cores,
                "counted": CPU_COUNTED},
        # Client-bound when the workers kept (nearly) every core they could use busy
        # (the driver, mostly waiting on pipes, is left out of this test).
        "bound": "client" if workers_busy >= 0.85 * min(cores, len(results)) else "store",
        "operations": operations, "segments": segments,
        "histograms": {n: h.to_bytes().hex() for n, h in hists.items()},
    }


def table(doc: dict[str, Any]) -> str:
    """The summary, one line per operation, for a terminal."""
    lines = [f"{doc['spec']['workload']} on {doc['spec']['url']}: {doc['elapsed_s']:.1f} s "
             f"measured after preparing {doc['prepare']['objects']:,} objects in "
             f"{doc['prepare']['seconds']:.1f} s (not counted)",
             f"{'operation':<10} {'ops':>9} {'ops/s':>10} {'MiB/s':>9} "
             f"{'avg ms':>8} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8} {'max':>8} errors"]
    for name, op in doc["operations"].items():
        lat = op["latency_ms"]
        errs = ", ".join(f"{c} {n}" for c, n in op["errors"].items()) or "0"
        if op.get("retries"):
            errs += f" ({op['retries']} retries)"
        lines.append(f"{name:<10} {op['ops']:>9,} {op['ops_per_s']:>10,.1f} "
                     f"{op['mib_per_s']:>9.2f} {lat['avg']:>8.3f} {lat['p50']:>8.3f} "
                     f"{lat['p90']:>8.3f} {lat['p99']:>8.3f} {lat['p99.9']:>8.3f} "
                     f"{lat['max']:>8.3f} {errs}")
        if "ttfb_ms" in op:
            t = op["ttfb_ms"]
            lines.append(f"{'  ttfb':<10} {'':>9} {'':>10} {'':>9} {t['avg']:>8.3f} "
                         f"{t['p50']:>8.3f} {t['p90']:>8.3f} {t['p99']:>8.3f} "
                         f"{t['p99.9']:>8.3f} {t['max']:>8.3f}")
    cpu = doc["cpu"]
    split = (f" (workers {cpu['workers_s']} s + driver {cpu['driver_s']} s)"
             if "driver_s" in cpu else "")
    lines.append(f"client CPU: {cpu['ms_per_op']} ms per operation{split}, "
                 f"{cpu['cores_busy']} of {cpu['cores']} cores busy: "
                 f"{doc['bound']}-bound")
    if "counted" in cpu:
        lines.append(f"  (counted: {cpu['counted']})")
    return "\n".join(lines)


def write_parquet(doc: dict[str, Any], path: str) -> None:
    import polars as pl

    summary = {k: v for k, v in doc.items() if k not in ("segments", "histograms")}
    rows: list[dict[str, Any]] = [{"kind": "run", "run": orjson.dumps(summary).decode()}]
    rows += [{"kind": "segment", **seg} for seg in doc["segments"]]
    rows += [{"kind": "histogram", "op": n, "histogram": bytes.fromhex(h)}
             for n, h in doc["histograms"].items()]
    schema = {"kind": pl.String, "op": pl.String, "second": pl.Int64,
              "width_s": pl.Float64, "ops": pl.Int64,
              "bytes": pl.Int64, "errors": pl.Int64, "p50_ms": pl.Float64,
              "p90_ms": pl.Float64, "p99_ms": pl.Float64, "histogram": pl.Binary,
              "run": pl.String}
    frame = pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema)
    frame.write_parquet(path)


def read(path: str) -> dict[str, Any]:
    """A run written by --out (Parquet) or --json (JSON)."""
    if path.endswith(".json"):
        try:
            with open(path, "rb") as f:
                doc: dict[str, Any] = orjson.loads(f.read())
            return doc
        except (OSError, orjson.JSONDecodeError) as exc:
            raise SpecError(f"{path}: cannot read a bench result ({exc})") from None
    import polars as pl

    try:
        frame = pl.read_parquet(path)
        run = frame.filter(pl.col("kind") == "run")["run"][0]
    except Exception as exc:  # noqa: BLE001 - not a file we wrote: one sentence
        raise SpecError(f"{path}: not a bench result written by --out ({exc})") from None
    doc = orjson.loads(run)
    segs = frame.filter(pl.col("kind") == "segment").select(
        "second", "width_s", "op", "ops", "bytes", "errors", "p50_ms", "p90_ms", "p99_ms")
    doc["segments"] = segs.to_dicts()
    hists = frame.filter(pl.col("kind") == "histogram")
    doc["histograms"] = {op: h.hex() for op, h in zip(hists["op"], hists["histogram"],
                                                      strict=True)}
    return doc


def _rates(doc: dict[str, Any], op: str) -> list[float]:
    """Ops per second of `op`, one figure per second; a last, partial second counts as a
    rate only if it covers half a second or more (a sliver's rate is noise)."""
    segs = {s["second"]: s["ops"] / s["width_s"] for s in doc["segments"]
            if s["op"] == op and s["width_s"] >= 0.5}
    if not segs:
        return []
    return [float(segs.get(s, 0.0)) for s in range(0, max(segs) + 1)]


def _latencies(doc: dict[str, Any], op: str, name: str) -> list[float]:
    """`op`'s latency percentile `name` (p50, p90, p99), one figure per second that had
    operations (same rule as _rates for a last, partial second)."""
    return [float(s[f"{name}_ms"]) for s in doc["segments"]
            if s["op"] == op and s["ops"] > 0 and s["width_s"] >= 0.5]


def _spread(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values) if values else 0.0
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


#: What `compare`'s ± is, printed under its table (and in `bench --help`).
SPREAD_NOTE = ("± is two standard errors of the change, from the spread of the per-second "
               "figures within each run (each second one sample); two runs are all it has, "
               "so a difference between runs that no second shows (another time of day, "
               "another machine) is not in it: repeat the pair to see that. A verdict needs "
               "at least 2 seconds in each run.")


def _delta(before: list[float], after: list[float], higher_is_faster: bool,
           points: tuple[float, float] | None = None) -> dict[str, Any]:
    """The change from `before` to `after` (per-second figures), its uncertainty and a
    verdict. `points`: the figures to compare (default: the means of the seconds)."""
    (m0, s0), (m1, s1) = _spread(before), _spread(after)
    a, b = points or (m0, m1)
    if not (a > 0 and b > 0 and m0 > 0 and m1 > 0):
        return {}
    delta = (b / a - 1) * 100
    out: dict[str, Any] = {"change_pct": round(delta, 2)}
    if len(before) < 2 or len(after) < 2:
        out["verdict"] = "too few seconds to tell (each run needs 2 or more)"
        return out
    unc = 2 * 100 * (b / a) * math.sqrt((s0 / m0) ** 2 + (s1 / m1) ** 2)
    out["uncertainty_pct"] = round(unc, 2)
    if abs(delta) <= unc:
        out["verdict"] = "no significant difference"
    else:
        word = "faster" if (delta > 0) == higher_is_faster else "slower"
        out["verdict"] = f"{word} by {abs(delta):.0f} % ± {unc:.0f} %"
    return out


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per operation: throughput and latency (p50, p90, p99) deltas, each with its
    uncertainty (see SPREAD_NOTE) and a verdict ("slower by 48 % ± 3 %": for latency,
    slower means it took longer)."""
    out: dict[str, Any] = {}
    for op in sorted(set(before["operations"]) & set(after["operations"])):
        r0, r1 = _rates(before, op), _rates(after, op)
        entry: dict[str, Any] = {"ops_per_s": [round(_spread(r0)[0], 2),
                                               round(_spread(r1)[0], 2)]}
        thr = _delta(r0, r1, higher_is_faster=True)
        if "change_pct" in thr:
            entry["throughput_change_pct"] = thr["change_pct"]
        if "uncertainty_pct" in thr:
            entry["uncertainty_pct"] = thr["uncertainty_pct"]
        if "verdict" in thr:
            entry["verdict"] = thr["verdict"]
        h0 = Histogram.from_bytes(bytes.fromhex(before["histograms"][op]))
        h1 = Histogram.from_bytes(bytes.fromhex(after["histograms"][op]))
        for name, q in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0)):
            # The figures compared are the whole run's (its merged histogram); the
            # uncertainty comes from the same percentile second by second.
            a, b = h0.percentile(q) / 1e6, h1.percentile(q) / 1e6
            entry[f"latency_{name}_ms"] = [round(a, 4), round(b, 4)]
            lat = _delta(_latencies(before, op, name), _latencies(after, op, name),
                         higher_is_faster=False, points=(a, b))
            for key, value in lat.items():
                entry[f"latency_{name}_{key}"] = value
        out[op] = entry
    return out


def _change(change: float | None, unc: float | None) -> str:
    if change is None:
        return ""
    return f"{change:+.0f} %" + (f" ± {unc:.0f} %" if unc is not None else "")


def compare_table(result: dict[str, Any]) -> str:
    """`bench compare` for a terminal: per operation, throughput then latency."""
    lines = [f"{'operation':<10} {'figure':<7} {'before':>11} {'after':>11} {'change':>15}  "
             "verdict"]
    for op, e in result.items():
        o0, o1 = e["ops_per_s"]
        lines.append(f"{op:<10} {'ops/s':<7} {o0:>11,.1f} {o1:>11,.1f} "
                     f"{_change(e.get('throughput_change_pct'), e.get('uncertainty_pct')):>15}"
                     f"  {e.get('verdict', 'no throughput to compare')}")
        for name in ("p50", "p90", "p99"):
            if f"latency_{name}_ms" not in e:
                continue  # (a result from before p90 was compared)
            a, b = e[f"latency_{name}_ms"]
            change = _change(e.get(f"latency_{name}_change_pct"),
                             e.get(f"latency_{name}_uncertainty_pct"))
            lines.append(f"{'':<10} {name + ' ms':<7} {a:>11.3f} {b:>11.3f} {change:>15}  "
                         f"{e.get(f'latency_{name}_verdict', 'no latency to compare')}")
    lines += ["", *textwrap.wrap(SPREAD_NOTE, 88)]
    return "\n".join(lines)


def show(doc: dict[str, Any]) -> str:
    """`bench show`: the summary, each worker, then per-second segments per operation."""
    lines = [table(doc), "", f"{'worker':>6} {'ops':>10} {'ops/s':>10} {'errors':>7} "
             f"{'CPU s':>7}"]
    for w in doc.get("workers", []):
        lines.append(f"{w['worker']:>6} {w['ops']:>10,} {w['ops_per_s']:>10,.1f} "
                     f"{w['errors']:>7} {w['cpu_s']:>7.2f}")
    lines += ["", f"{'second':>6} {'operation':<10} {'ops':>8} {'MiB':>9} "
              f"{'errors':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"]
    for s in doc["segments"]:
        lines.append(f"{s['second']:>6} {s['op']:<10} {s['ops']:>8,} "
                     f"{s['bytes'] / _MIB:>9.2f} {s['errors']:>6} {s['p50_ms']:>8.3f} "
                     f"{s['p90_ms']:>8.3f} {s['p99_ms']:>8.3f}")
    return "\n".join(lines)


#: The line style of each latency percentile drawn over time (the colour is the
#: operation's, as in the other panels).
_PERCENTILE_STYLES: tuple[tuple[str, Literal["-", "-.", "--"]], ...] = (
    ("p50", "-"), ("p90", "-."), ("p99", "--"))


def plot(doc: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """Draw the run as a PNG at `path`, three panels: throughput over time per operation,
    latency percentiles (p50, p90, p99) over time, and each operation's latency by
    percentile (from its whole-run histogram). Each operation has one colour in all
    three. Returns what was drawn, panel by panel (title, axis labels, and each line's
    label and colour), for tests and for callers that want to caption it."""
    if not path.endswith(".png"):
        raise SpecError(f"--plot {path}: the picture is a PNG; name it something.png")
    try:
        import matplotlib
    except ImportError:
        raise SpecError("--plot needs matplotlib: pip install 'batchops[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator, NullLocator

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 11))
    fig.suptitle(f"batchops bench: {doc['spec']['workload']} on {doc['spec']['url']}")
    ops = sorted(doc["operations"])
    colours = {op: f"C{i % 10}" for i, op in enumerate(ops)}
    for op in ops:
        # A last, partial second under half a second is left out of both time panels
        # (as compare does): its few operations make a rate and percentiles of noise.
        segs = [s for s in doc["segments"] if s["op"] == op and s["width_s"] >= 0.5]
        xs = [s["second"] for s in segs]
        colour = colours[op]
        top.plot(xs, [s["ops"] / s["width_s"] for s in segs], marker=".", color=colour,
                 label=op)
        for name, style in _PERCENTILE_STYLES:
            middle.plot(xs, [s[f"{name}_ms"] for s in segs], linestyle=style, marker=".",
                        markersize=4, color=colour, label=f"{op} {name}")
        h = Histogram.from_bytes(bytes.fromhex(doc["histograms"][op]))
        qs = [100 * (1 - 10 ** (-k / 20)) for k in range(0, 81)]
        bottom.plot([1 / (1 - q / 100) for q in qs], [h.percentile(q) / 1e6 for q in qs],
                    color=colour, label=op)
    top.set_title("throughput over time, per operation")
    top.set_xlabel("second")
    top.set_ylabel("operations per second")
    middle.set_title("latency percentiles over time (p50 solid, p90 dash-dot, p99 dashed)")
    middle.set_xlabel("second")
    middle.set_ylabel("ms")
    bottom.set_title("latency distribution per operation (by percentile, whole run)")
    bottom.set_xscale("log")
    bottom.set_xticks([1, 2, 10, 100, 1000, 10000])
    bottom.set_xticklabels(["0", "50", "90", "99", "99.9", "99.99"])
    bottom.xaxis.set_minor_locator(NullLocator())
    for ax in (top, middle):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlabel("percentile")
    bottom.set_ylabel("ms")
    for ax in (top, middle, bottom):
        ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # headroom: the legends sit above the lines
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    middle.grid(True, alpha=0.3)
    # Two small legends instead of one entry per (operation, percentile): the colours
    # (operations) and the line styles (percentiles).
    by_op = middle.legend(handles=[Line2D([], [], color=colours[op], label=op) for op in ops],
                          fontsize="small", loc="upper left")
    middle.add_artist(by_op)
    middle.legend(handles=[Line2D([], [], color="black", linestyle=style, label=name)
                           for name, style in _PERCENTILE_STYLES],
                  fontsize="small", loc="upper right")
    panels = [{"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
               "lines": [{"label": line.get_label(),
                          "colour": matplotlib.colors.to_hex(line.get_color())}
                         for line in ax.get_lines()]}
              for ax in (top, middle, bottom)]
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # (room for the title above the panels)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return panels
