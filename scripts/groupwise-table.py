#!/usr/bin/env python3
"""Markdown summary of a group-wise vs per-channel sweep, read from its results.csv.

    scripts/groupwise-table.py results/groupsize_sweep/results.csv

Prints, from the CSV only (no number is typed here):
  - the protocol line (model, perplexity protocol, windows, texts, seed, threads);
  - per bit width, a table with one row per method: perplexity at every group size and per
    channel, each group-wise value followed by its change against the same method per channel
    (100 * (PPL_group / PPL_channel - 1), in %); the lowest perplexity of a column in bold; the
    same table of the mean KL divergence to the FP32 model (kl_div);
  - per bit width, a size and speed table: bits per weight and decode tokens/s of each format
    (the median over the methods' cells; empty when no packed kernel measured it);
  - the facts the README states about the notes' claims: the range of the group-wise vs
    per-channel change per bit width and group size, and PRAQ against AWQ in every setting.

A group-wise row pairs with the per-channel row of the same method parameters, propagation, format
parameters (apart from granularity and group size) and other swept axes, as the charts pair them
(src/report/gq_plot.c). Exit status 2 with one line on stderr when the file is not such a table.
"""
import csv
import json
import math
import statistics
import sys

REQUIRED = ("series", "method", "sweep", "bits", "group_size", "method_params", "format_params",
            "propagate", "ppl", "ppl_stderr", "kl_div", "bpw", "decode_tok_s", "protocol", "ctx",
            "eval_windows", "scored", "eval_text", "eval_sha256", "model", "seed", "threads")


class TableError(Exception):
    pass


def num(row, col):
    try:
        v = float(row.get(col) or "nan")
    except ValueError:
        raise TableError(f"column {col}: {row.get(col)!r} is not a number (cell {row.get('cell')})")
    return v


def load(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise TableError(f"cannot read: {e.strerror}")
    except (csv.Error, UnicodeDecodeError) as e:
        raise TableError(f"not a CSV file: {e}")
    if not rows:
        raise TableError("no rows")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        raise TableError(f"no column {missing[0]} (not a gq-bench results.csv)")
    return rows


def granularity(row):
    try:
        fmt = json.loads(row["format_params"] or "{}")
    except json.JSONDecodeError:
        raise TableError(f"column format_params of cell {row.get('cell')} is not JSON")
    return fmt.get("granularity") if isinstance(fmt, dict) else None


def pairing_key(row):
    """What a group-wise row shares with its per-channel counterpart."""
    fmt = json.loads(row["format_params"] or "{}")
    fmt.pop("granularity", None)
    fmt.pop("group_size", None)
    axes = tuple(kv for kv in row["sweep"].split() if not kv.startswith("group_size="))
    method = json.loads(row["method_params"] or "null")
    return (json.dumps(fmt, sort_keys=True), axes, json.dumps(method, sort_keys=True),
            row["propagate"])


def classify(rows):
    base, groups, channels = None, [], []
    for r in rows:
        if r["method"] == "none":
            base = r
        elif granularity(r) == "channel":
            channels.append(r)
        elif r["group_size"]:
            groups.append(r)
    if not groups or not channels:
        raise TableError("needs group-wise and per-channel cells (granularity \"channel\")")
    return base, groups, channels


def fmt_value(v):
    """Perplexities with 4 decimals, KL divergences (below 1) with 3 significant digits."""
    if not math.isfinite(v):
        return ""
    return f"{v:.4f}" if v >= 1 else f"{v:.3g}"


def pct(a, b):
    return 100.0 * (a / b - 1.0)


def protocol_line(rows, base):
    r = rows[0]
    calib = next((x for x in rows if x.get("calib_text")), None)
    cal = (f"calibration {calib['calib_text']} (sha256 {calib['calib_sha256'][:8]}), "
           f"{calib['n_calib']} windows x {calib['calib_ctx']} tokens" if calib else
           "no calibration")
    line = (f"**{r['model']}**: perplexity protocol `{r['protocol']}`, ctx {r['ctx']}, "
            f"{r['eval_windows']} windows ({r['scored']} scored tokens) of {r['eval_text']} "
            f"(sha256 {r['eval_sha256'][:8]}); {cal}; seed {r['seed']}; "
            f"{r['threads']} threads per cell.")
    if base:
        line += (f" FP32 baseline: PPL {fmt_value(num(base, 'ppl'))} ± "
                 f"{num(base, 'ppl_stderr'):.4f}, decode {num(base, 'decode_tok_s'):.0f} tok/s "
                 f"(BLAS).")
    return line


def method_table(bits, groups, channels, col, what):
    gsizes = sorted({int(num(r, "group_size")) for r in groups})
    series = list(dict.fromkeys(r["series"] for r in groups))
    by_key = {pairing_key(c): c for c in channels}
    cell = {(r["series"], int(num(r, "group_size"))): r for r in groups}
    pc = {s: by_key.get(pairing_key(next(r for r in groups if r["series"] == s)))
          for s in series}
    cols = [f"g{g}" for g in gsizes] + ["per channel"]
    best = {}
    for g in gsizes:
        best[g] = min(num(cell[(s, g)], col) for s in series if (s, g) in cell)
    vals = [num(c, col) for c in pc.values() if c]
    best["pc"] = min(vals) if vals else math.nan
    out = [f"INT{bits}: {what}; in brackets the change against the same method per channel "
           "(%, negative: the groups are better); bold: the lowest of the column.", "",
           "| method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for s in series:
        cells = []
        for g in gsizes:
            r = cell.get((s, g))
            if not r:
                cells.append("")
                continue
            v = num(r, col)
            t = f"**{fmt_value(v)}**" if v == best[g] else fmt_value(v)
            if pc[s]:
                t += f" ({pct(v, num(pc[s], col)):+.1f}%)"
            cells.append(t)
        v = num(pc[s], col) if pc[s] else math.nan
        cells.append(f"**{fmt_value(v)}**" if v == best["pc"] else fmt_value(v))
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    return out


def size_speed_table(bits, groups, channels):
    formats = {}
    for r in groups + channels:
        g = r["group_size"]
        key = f"g{g}" if g else "per channel"
        formats.setdefault(key, []).append(r)
    out = [f"INT{bits} size and speed (median over the methods' cells; decode on the packed "
           "kernels, empty: no packed kernel, see `throughput_note`):", "",
           "| format | bits per weight | decode tok/s | cells |", "|---|---:|---:|---:|"]
    for key, rs in formats.items():
        bpw = statistics.median(num(r, "bpw") for r in rs)
        tok = [num(r, "decode_tok_s") for r in rs if math.isfinite(num(r, "decode_tok_s"))]
        speed = f"{statistics.median(tok):.0f}" if tok else ""
        out.append(f"| int{bits} {key} asym | {bpw:.3f} | {speed} | {len(rs)} |")
    return out


def claims(groups, channels):
    by_key = {pairing_key(c): c for c in channels}
    out = []
    for bits in sorted({r["bits"] for r in groups}, key=int):
        for g in sorted({int(num(r, "group_size")) for r in groups}):
            d = [pct(num(r, "ppl"), num(by_key[pairing_key(r)], "ppl")) for r in groups
                 if r["bits"] == bits and int(num(r, "group_size")) == g
                 and pairing_key(r) in by_key]
            if d:
                out.append(f"- INT{bits} g{g} vs per channel: {min(d):+.1f}% to {max(d):+.1f}% "
                           f"over {len(d)} methods")
    awq = {(r["bits"], r["group_size"]): r for r in groups + channels if r["method"] == "awq"}
    praq = {(r["bits"], r["group_size"]): r for r in groups + channels if r["method"] == "praq"}
    d = [pct(num(praq[k], "ppl"), num(awq[k], "ppl")) for k in awq if k in praq]
    if d:
        better = sum(1 for x in d if x < 0)
        out.append(f"- PRAQ vs AWQ (same format): {min(d):+.2f}% to {max(d):+.2f}%; PRAQ lower "
                   f"in {better} of {len(d)} settings")
    return out


def main(argv):
    if len(argv) != 2:
        print("usage: scripts/groupwise-table.py results/<name>/results.csv", file=sys.stderr)
        return 2
    try:
        rows = load(argv[1])
        base, groups, channels = classify(rows)
        lines = [protocol_line(rows, base), ""]
        for bits in sorted({r["bits"] for r in groups}, key=int):
            g = [r for r in groups if r["bits"] == bits]
            c = [r for r in channels if r["bits"] == bits]
            lines += method_table(bits, g, c, "ppl", "perplexity") + [""]
            lines += method_table(bits, g, c, "kl_div", "mean KL(FP32 || quantized), nats per "
                                  "scored token, on the same windows") + [""]
            lines += size_speed_table(bits, g, c) + [""]
        lines += ["Ranges computed from the rows above:", ""] + claims(groups, channels)
    except TableError as e:
        print(f"groupwise-table: {argv[1]}: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
