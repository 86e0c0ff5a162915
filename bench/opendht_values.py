#!/usr/bin/python3
"""OpenDHT on loopback: the small-values side of bench/peers.sh.

Starts N OpenDHT nodes (DhtRunner instances, one thread each) inside this process, all bound
to 127.0.0.1 only and bootstrapped to node 0, waits (bounded) until the routing tables have
settled, then does M puts of random values under random keys from node 1 and M gets of those
keys from node N, one at a time, timed from the call to its callback (time.perf_counter): the
put until its done callback, the get until its done callback (the lookup completed) and until
the expected value first arrived.

Derived from the peer reference script opendht_bench.py (the same settle rule, percentiles
and timings), without its signed puts through `dhtnode -i`.

Prints exactly one JSON line on stdout; progress on stderr. Must run with Debian's
/usr/bin/python3 (python3-opendht is built for it). Every wait is bounded.
"""
import argparse
import json
import random
import statistics
import sys
import threading
import time

from stats import pct

try:
    import opendht as dht
except ImportError as e:  # pragma: no cover
    sys.stderr.write("cannot import opendht (%s); install python3-opendht and run with /usr/bin/python3\n" % e)
    sys.exit(2)

AF_INET = 2
LOOPBACK = "127.0.0.1"


def log(*a):
    print("[opendht_values]", *a, file=sys.stderr, flush=True)


def rss_kb(pid="self"):
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def good_nodes(runner):
    try:
        return runner.getRoutingTablesLog(AF_INET).count("[good]")
    except Exception:
        return 0


def timed_put(runner, key, value, timeout):
    ev = threading.Event()
    res = {}

    def done(ok, nodes):
        res["ok"] = ok
        res["t"] = time.perf_counter()
        ev.set()

    t0 = time.perf_counter()
    runner.put(key, value, done_cb=done)
    if not ev.wait(timeout):
        return False, None
    return bool(res.get("ok")), (res["t"] - t0) * 1000.0


def timed_get(runner, key, expect_data, timeout):
    """Returns (found, first_value_ms, done_ms)."""
    ev = threading.Event()
    res = {"first": None}

    def on_value(v):
        if res["first"] is None and v.data == expect_data:
            res["first"] = time.perf_counter()
        return True  # keep going until the search completes

    def on_done(ok, nodes):
        res["done"] = time.perf_counter()
        ev.set()

    t0 = time.perf_counter()
    runner.get(key, get_cb=on_value, done_cb=on_done)
    ev.wait(timeout)
    first = (res["first"] - t0) * 1000.0 if res["first"] is not None else None
    done = (res["done"] - t0) * 1000.0 if "done" in res else None
    return res["first"] is not None, first, done


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=32)
    ap.add_argument("--puts", type=int, default=200)
    ap.add_argument("--value-size", type=int, default=1024, help="bytes per value (default 1024)")
    ap.add_argument("--settle-timeout", type=float, default=30.0, help="max seconds to wait for routing tables")
    ap.add_argument("--settle-min-good", type=int, default=8, help="good routing-table entries each node needs")
    ap.add_argument("--settle-stable", type=float, default=5.0,
                    help="or stop settling (after --settle-min s) once every node has >=1 good entry "
                         "and the totals have not changed for this long (s)")
    ap.add_argument("--settle-min", type=float, default=10.0,
                    help="earliest time the 'stable' fallback may end settling (s)")
    ap.add_argument("--settle-extra", type=float, default=2.0, help="extra sleep after settling (s)")
    ap.add_argument("--op-timeout", type=float, default=15.0, help="per put/get timeout (s)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    if args.nodes < 2:
        ap.error("--nodes must be >= 2")
    rng = random.Random(args.seed)

    rss_before = rss_kb()
    t_start = time.perf_counter()
    nodes = []
    out = {"system": "opendht", "version": "2.4.12 (Debian python3-opendht)"}
    try:
        # ---- start the network --------------------------------------------
        boot = dht.DhtRunner()
        boot.run(ipv4=LOOPBACK, port=0)
        nodes.append(boot)
        boot_port = boot.getBound().getPort()
        for _ in range(args.nodes - 1):
            r = dht.DhtRunner()
            r.run(ipv4=LOOPBACK, port=0)
            r.bootstrap(LOOPBACK, str(boot_port))
            nodes.append(r)
        log("started %d nodes, bootstrap 127.0.0.1:%d" % (len(nodes), boot_port))

        # ---- settle (bounded) -----------------------------------------------
        need = min(args.settle_min_good, args.nodes - 1)
        t0 = time.perf_counter()
        deadline = time.monotonic() + args.settle_timeout
        last_total, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            counts = [good_nodes(r) for r in nodes]
            if min(counts) >= need:
                break
            # small networks may never give every node `need` good entries:
            # also accept "every node has a good entry and totals stopped moving"
            total = sum(counts)
            if total != last_total:
                last_total, stable_since = total, time.monotonic()
            elif (min(counts) >= 1 and time.perf_counter() - t0 >= args.settle_min
                  and time.monotonic() - stable_since >= args.settle_stable):
                break
            time.sleep(0.25)
        counts = [good_nodes(r) for r in nodes]
        settle_s = time.perf_counter() - t0
        log("settled in %.2fs; good routing entries min/median/max = %d/%d/%d"
            % (settle_s, min(counts), int(statistics.median(counts)), max(counts)))
        time.sleep(args.settle_extra)
        rss_settled = rss_kb()

        putter = nodes[1]
        getter = nodes[-1]

        # ---- puts ---------------------------------------------------------
        items = []
        put_ms, put_ok = [], 0
        for i in range(args.puts):
            key = dht.InfoHash.getRandom()
            data = bytes(rng.getrandbits(8) for _ in range(args.value_size))
            ok, ms = timed_put(putter, key, dht.Value(data), args.op_timeout)
            if ok:
                put_ok += 1
                put_ms.append(ms)
            items.append((key, data))
        log("puts: %d/%d ok" % (put_ok, args.puts))

        # ---- gets -----------------------------------------------------------
        get_done_ms, get_first_ms, get_ok = [], [], 0
        for key, data in items:
            found, first, done = timed_get(getter, key, data, args.op_timeout)
            if found:
                get_ok += 1
                get_first_ms.append(first)
                if done is not None:
                    get_done_ms.append(done)
        log("gets: %d/%d found" % (get_ok, len(items)))
        rss_after = rss_kb()

        out.update({
            "nodes": args.nodes,
            "puts": args.puts,
            "gets": len(items),
            "value_bytes": args.value_size,
            "settle_s": round(settle_s, 2),
            "put_success_rate": round(put_ok / max(1, args.puts), 4),
            "put_p50_ms": pct(put_ms, 50),
            "put_p95_ms": pct(put_ms, 95),
            # get_*: time until the lookup completed (DhtRunner::get done callback)
            "get_p50_ms": pct(get_done_ms, 50),
            "get_p95_ms": pct(get_done_ms, 95),
            # time until the expected value first arrived in the get callback
            "get_first_value_p50_ms": pct(get_first_ms, 50),
            "get_first_value_p95_ms": pct(get_first_ms, 95),
            "get_success_rate": round(get_ok / max(1, len(items)), 4),
            # all nodes live in one process: (RSS after settle - RSS before) / N
            "rss_per_node_kb_settled": round((rss_settled - rss_before) / args.nodes, 1)
            if rss_before and rss_settled else None,
            "rss_per_node_kb_after_ops": round((rss_after - rss_before) / args.nodes, 1)
            if rss_before and rss_after else None,
            "process_rss_kb": rss_after,
        })

    finally:
        # shut down all runners (bounded: join after shutdown)
        done_ev = []
        for r in nodes:
            ev = threading.Event()
            try:
                r.shutdown(lambda ev=ev: ev.set())
            except Exception:
                ev.set()
            done_ev.append(ev)
        for ev in done_ev:
            ev.wait(5)
        for r in nodes:
            try:
                r.join()
            except Exception:
                pass

    out["total_s"] = round(time.perf_counter() - t_start, 2)
    out["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
