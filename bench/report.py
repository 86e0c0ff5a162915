#!/usr/bin/python3
"""The table of bench/peers.sh: reads the run's results (one JSON object a line) and prints
the figures with their ratios cairn/peer, and with --json 1 one JSON object on stdout (the
table then goes to stderr).

    report.py RESULTS.jsonl [--json 0|1] --meta key=value ...
"""
import argparse
import json
import statistics
import sys


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rng(xs):
    xs = [x for x in xs if x is not None]
    return [min(xs), max(xs)] if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def files_summary(rows):
    puts = {r["pair"]: r for r in rows if r["kind"] == "cairn_put"}
    gets = {r["pair"]: r for r in rows if r["kind"] == "cairn_get"}
    sends = {r["pair"]: r for r in rows if r["kind"] == "sendme_get"}
    setup = next((r for r in rows if r["kind"] == "files_setup"), {})
    if not gets and not sends:
        return None
    pairs = []
    for p in sorted(set(gets) | set(sends)):
        g, s, u = gets.get(p), sends.get(p), puts.get(p, {})
        c = g["bytes"] / g["seconds"] / 1e6 if g and g["ok"] else None
        m = s["bytes"] / s["seconds"] / 1e6 if s and s["ok"] else None
        fetched = g["chunks_after"] - g["chunks_before"] if g else None
        chunks = u.get("chunks")
        pairs.append({
            "pair": p,
            "order": "cairn first" if p % 2 == 1 else "sendme first",
            "cairn_get_MB_per_s": round(c, 2) if c else None,
            "sendme_receive_MB_per_s": round(m, 2) if m else None,
            "ratio": round(c / m, 3) if c and m else None,
            "cairn_get_s": g["seconds"] if g else None,
            "sendme_receive_s": s["seconds"] if s else None,
            "cairn_put_MB_per_s": round(u["bytes"] / u["seconds"] / 1e6, 2) if u else None,
            "put_chunks": chunks,
            "put_replicas": u.get("replicas"),
            "put_replica_failures": u.get("replica_failures"),
            "putter_routing_table_before": u.get("putter_routing_table"),
            "getter_routing_table_before": u.get("getter_routing_table"),
            "get_chunks_fetched": fetched,
            "get_chunks_already_local": chunks - fetched if chunks is not None and fetched is not None else None,
            "getter_daemon_rss_before_kb": g.get("daemon_rss_before_kb") if g else None,
            "getter_daemon_peak_rss_kb": g["daemon_hwm_kb"] if g else None,
            "getter_cli_peak_rss_kb": g["cli_max_rss_kb"] if g else None,
            "sendme_receiver_peak_rss_kb": s["receiver_max_rss_kb"] if s else None,
            "sendme_sender_ready_s": s["sender_ready_s"] if s else None,
            "cairn_ok": g["ok"] if g else None,
            "sendme_ok": s["ok"] if s else None,
        })
    both = [x["getter_daemon_peak_rss_kb"] + x["getter_cli_peak_rss_kb"] for x in pairs
            if x["getter_daemon_peak_rss_kb"] is not None and x["getter_cli_peak_rss_kb"] is not None]
    return {
        "pairs": pairs,
        "cairn_get_MB_per_s_median": med([x["cairn_get_MB_per_s"] for x in pairs]),
        "cairn_get_MB_per_s_range": rng([x["cairn_get_MB_per_s"] for x in pairs]),
        "sendme_receive_MB_per_s_median": med([x["sendme_receive_MB_per_s"] for x in pairs]),
        "sendme_receive_MB_per_s_range": rng([x["sendme_receive_MB_per_s"] for x in pairs]),
        "get_ratio_median": med([x["ratio"] for x in pairs]),
        "get_ratio_range": rng([x["ratio"] for x in pairs]),
        "cairn_put_MB_per_s_median": med([x["cairn_put_MB_per_s"] for x in pairs]),
        "cairn_put_MB_per_s_range": rng([x["cairn_put_MB_per_s"] for x in pairs]),
        "get_chunks_already_local_median": med([x["get_chunks_already_local"] for x in pairs]),
        "put_chunks_median": med([x["put_chunks"] for x in pairs]),
        "getter_daemon_rss_before_kb_median": med([x["getter_daemon_rss_before_kb"] for x in pairs]),
        "getter_daemon_peak_rss_kb_median": med([x["getter_daemon_peak_rss_kb"] for x in pairs]),
        "getter_cli_peak_rss_kb_median": med([x["getter_cli_peak_rss_kb"] for x in pairs]),
        "getter_both_peak_rss_kb_median": med(both),
        "getter_both_peak_rss_kb_range": rng(both),
        "sendme_receiver_peak_rss_kb_median": med([x["sendme_receiver_peak_rss_kb"] for x in pairs]),
        "getter_daemon_hwm_kb_whole_run": setup.get("getter_hwm_kb_total"),
        "devnet_process_hwm_kb": setup.get("devnet_hwm_kb"),
        "failures": sum(1 for x in pairs if x["cairn_ok"] is False or x["sendme_ok"] is False),
    }


def values_summary(rows):
    c = next((r for r in rows if r["kind"] == "cairn_values"), None)
    o = next((r for r in rows if r["kind"] == "opendht_values"), None)
    if not c and not o:
        return None
    c = c["result"] if c else {}
    o = o["result"] if o else {}
    out = {"cairn": c, "opendht": o}
    for k in ("put_p50_ms", "put_p95_ms", "get_p50_ms", "get_p95_ms"):
        r = ratio(c.get(k), o.get(k))
        out["ratio_" + k] = round(r, 3) if r else None
    for k in ("p50", "p95"):
        r = ratio(c.get("get_%s_ms" % k), o.get("get_first_value_%s_ms" % k))
        out["ratio_get_%s_ms_vs_first_value" % k] = round(r, 3) if r else None
    return out


def fmt(x, digits=2, unit=""):
    if x is None:
        return "-"
    return ("%." + str(digits) + "f%s") % (x, unit)


def table(meta, files, values):
    rows = []
    if files:
        f = files
        mib = lambda kb: kb / 1024 if kb is not None else None  # noqa: E731
        rows += [
            ("file get, %s MiB, MB/s (median of %d pairs)" % (meta.get("size_mib"), len(f["pairs"])),
             fmt(f["cairn_get_MB_per_s_median"], 1), "sendme " + fmt(f["sendme_receive_MB_per_s_median"], 1),
             fmt(f["get_ratio_median"], 3) + " (median of pair ratios; %s-%s)" % tuple(
                 fmt(x, 3) for x in (f["get_ratio_range"] or [None, None]))),
            ("file put, 5 replicas, MB/s (median)", fmt(f["cairn_put_MB_per_s_median"], 1), "-", "-"),
            ("getter peak RSS, MiB: daemon + CLI (median)",
             "%s + %s = %s" % (fmt(mib(f["getter_daemon_peak_rss_kb_median"]), 1),
                               fmt(mib(f["getter_cli_peak_rss_kb_median"]), 1),
                               fmt(mib(f["getter_both_peak_rss_kb_median"]), 1)),
             "sendme receive " + fmt(mib(f["sendme_receiver_peak_rss_kb_median"]), 1),
             fmt(ratio(f["getter_both_peak_rss_kb_median"], f["sendme_receiver_peak_rss_kb_median"]), 2)),
        ]
    if values:
        c, o = values["cairn"], values["opendht"]
        n = meta.get("values")
        for op in ("put", "get"):
            for p in ("p50", "p95"):
                k = "%s_%s_ms" % (op, p)
                rows.append(("%s %s ms, %s x %s B, %s nodes" % (op, p, n, meta.get("value_size"), meta.get("value_nodes")),
                             fmt(c.get(k), 3), "OpenDHT " + fmt(o.get(k), 3), fmt(values["ratio_" + k], 2)))
        for p in ("p50", "p95"):
            rows.append(("get %s ms vs OpenDHT's first value" % p, fmt(c.get("get_%s_ms" % p), 3),
                         "OpenDHT " + fmt(o.get("get_first_value_%s_ms" % p), 3),
                         fmt(values["ratio_get_%s_ms_vs_first_value" % p], 2)))
    head = ("figure", "cairn", "peer", "cairn/peer")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    text = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    notes = []
    if files:
        notes.append("files: cairn get of %s chunks had a median of %s already on the getter (it is one of the "
                     "5 closest of about 5/%s of them); failures %d" % (
                         fmt(files["put_chunks_median"], 0), fmt(files["get_chunks_already_local_median"], 0),
                         meta.get("file_nodes"), files["failures"]))
        notes.append("files: replicas per chunk placed by each put: %s; get MB/s by pair: %s; sendme MB/s by pair: %s" % (
            ", ".join(fmt(x["put_replicas"] / x["put_chunks"], 2) if x["put_chunks"] else "-" for x in files["pairs"]),
            ", ".join(fmt(x["cairn_get_MB_per_s"], 1) for x in files["pairs"]),
            ", ".join(fmt(x["sendme_receive_MB_per_s"], 1) for x in files["pairs"])))
        notes.append("files: getter daemon RSS at the start of each get / peak during it, MiB: %s" % ", ".join(
            "%s/%s" % (fmt(x["getter_daemon_rss_before_kb"] / 1024 if x["getter_daemon_rss_before_kb"] else None, 1),
                       fmt(x["getter_daemon_peak_rss_kb"] / 1024 if x["getter_daemon_peak_rss_kb"] else None, 1))
            for x in files["pairs"]))
    if values:
        notes.append("values: success cairn put %s get %s, OpenDHT put %s get %s; cairn's HTTP floor p50 %s ms" % (
            values["cairn"].get("put_success_rate"), values["cairn"].get("get_success_rate"),
            values["opendht"].get("put_success_rate"), values["opendht"].get("get_success_rate"),
            fmt(values["cairn"].get("http_floor_p50_ms"), 3)))
    notes.append("commit %s, %s, %s cores, %s GiB, load %s before / %s after; sendme %s, OpenDHT %s" % (
        meta.get("commit"), meta.get("started"), meta.get("cores"), meta.get("mem_gib"),
        meta.get("load_before"), meta.get("load_after"), meta.get("sendme") or "-", meta.get("opendht") or "-"))
    return "\n".join(text + [""] + notes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--json", default="0")
    ap.add_argument("--meta", nargs="*", default=[])
    args = ap.parse_args()
    meta = dict(kv.split("=", 1) for kv in args.meta)
    with open(args.results) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    files, values = files_summary(rows), values_summary(rows)
    text = table(meta, files, values)
    if args.json == "1":
        print(text, file=sys.stderr)
        print(json.dumps({"meta": meta, "files": files, "values": values}))
    else:
        print(text)


if __name__ == "__main__":
    main()
