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
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson

from batchops._histogram import Histogram
from batchops.model.errors import SpecError

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))
_MIB = 1024 * 1024


def _latency(h: Histogram) -> dict[str, float]:
    out = {"min": h.min / 1e6, "avg": h.mean() / 1e6}
    out.update({name: h.percentile(q) / 1e6 for name, q in PERCENTILES})
    out["max"] = h.max / 1e6
    return {k: round(v, 4) for k, v in out.items()}


def merge(spec: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's summary document from its workers' results."""
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
    cpu_user = sum(r["cpu"]["user"] for r in results)
    cpu_sys = sum(r["cpu"]["sys"] for r in results)
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
                "ms_per_op": round((cpu_user + cpu_sys) * 1000 / all_ops, 4) if all_ops else
                None, "cores_busy": round(busy, 2), "cores": cores},
        # Client-bound when the workers kept (nearly) every core they could use busy.
        "bound": "client" if busy >= 0.85 * min(cores, len(results)) else "store",
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
    lines.append(f"client CPU: {cpu['ms_per_op']} ms per operation, "
                 f"{cpu['cores_busy']} of {cpu['cores']} cores busy: "
                 f"{doc['bound']}-bound")
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


def _spread(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values) if values else 0.0
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per operation: throughput and latency deltas with their uncertainty (two standard
    errors of the per-second rates), and a verdict."""
    out: dict[str, Any] = {}
    for op in sorted(set(before["operations"]) & set(after["operations"])):
        (m0, s0), (m1, s1) = _spread(_rates(before, op)), _spread(_rates(after, op))
        entry: dict[str, Any] = {"ops_per_s": [round(m0, 2), round(m1, 2)]}
        if m0 > 0 and m1 > 0:
            delta = (m1 / m0 - 1) * 100
            unc = 2 * 100 * (m1 / m0) * math.sqrt((s0 / m0) ** 2 + (s1 / m1) ** 2)
            entry["throughput_change_pct"] = round(delta, 2)
            entry["uncertainty_pct"] = round(unc, 2)
            if abs(delta) <= unc:
                entry["verdict"] = "no significant difference"
            else:
                word = "faster" if delta > 0 else "slower"
                entry["verdict"] = f"{word} by {abs(delta):.0f} % ± {unc:.0f} %"
        h0 = Histogram.from_bytes(bytes.fromhex(before["histograms"][op]))
        h1 = Histogram.from_bytes(bytes.fromhex(after["histograms"][op]))
        for name, q in (("p50", 50.0), ("p99", 99.0)):
            a, b = h0.percentile(q) / 1e6, h1.percentile(q) / 1e6
            entry[f"latency_{name}_ms"] = [round(a, 4), round(b, 4)]
            if a:
                entry[f"latency_{name}_change_pct"] = round((b / a - 1) * 100, 2)
        out[op] = entry
    return out


def compare_table(result: dict[str, Any]) -> str:
    lines = [f"{'operation':<10} {'ops/s before':>13} {'after':>10} {'p50 ms':>17} "
             f"{'p99 ms':>17}  verdict"]
    for op, e in result.items():
        p50, p99 = e["latency_p50_ms"], e["latency_p99_ms"]
        lines.append(f"{op:<10} {e['ops_per_s'][0]:>13,.1f} {e['ops_per_s'][1]:>10,.1f} "
                     f"{p50[0]:>8.3f}→{p50[1]:<8.3f} {p99[0]:>8.3f}→{p99[1]:<8.3f}  "
                     f"{e.get('verdict', 'no throughput to compare')}")
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


def plot(doc: dict[str, Any], path: str) -> None:
    """Three panels: throughput over time, latency percentiles over time, and each
    operation's latency by percentile (from its whole-run histogram)."""
    if not path.endswith(".png"):
        raise SpecError(f"--plot {path}: the picture is a PNG; name it something.png")
    try:
        import matplotlib
    except ImportError:
        raise SpecError("--plot needs matplotlib: pip install 'batchops[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 11))
    title = f"batchops bench: {doc['spec']['workload']} on {doc['spec']['url']}"
    fig.suptitle(title)
    ops = sorted(doc["operations"])
    for op in ops:
        segs = [s for s in doc["segments"] if s["op"] == op]
        xs = [s["second"] for s in segs]
        top.plot(xs, [s["ops"] / s["width_s"] if s["width_s"] >= 0.5 else None for s in segs],
                 marker=".", label=op)
        middle.plot(xs, [s["p50_ms"] for s in segs], marker=".", label=f"{op} p50")
        middle.plot(xs, [s["p99_ms"] for s in segs], linestyle="--", label=f"{op} p99")
        h = Histogram.from_bytes(bytes.fromhex(doc["histograms"][op]))
        qs = [100 * (1 - 10 ** (-k / 20)) for k in range(0, 81)]
        bottom.plot([1 / (1 - q / 100) for q in qs], [h.percentile(q) / 1e6 for q in qs],
                    label=op)
    top.set_title("throughput")
    top.set_xlabel("second")
    top.set_ylabel("operations per second")
    middle.set_title("latency over time")
    middle.set_xlabel("second")
    middle.set_ylabel("ms")
    bottom.set_title("latency by percentile (whole run)")
    bottom.set_xscale("log")
    bottom.set_xticks([1, 2, 10, 100, 1000, 10000])
    bottom.set_xticklabels(["0", "50", "90", "99", "99.9", "99.99"])
    bottom.set_xlabel("percentile")
    bottom.set_ylabel("ms")
    for ax in (top, middle, bottom):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
