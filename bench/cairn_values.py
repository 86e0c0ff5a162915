#!/usr/bin/python3
"""Small values through cairn's HTTP API, one request at a time.

Against a running `cairn devnet --dir DIR` of N nodes: waits (bounded) until every node's
routing table holds at least --settle-min-good peers, then puts --values random values of
--value-size bytes, one at a time, with `POST /api/v0/put` on node1, and reads each back with
`GET /api/v0/get/<id>` on nodeN, checking the bytes. Each side keeps one HTTP/1.1 keep-alive
connection open (http.client), so a request's time is its round trip through the API and the
node: from just before the request is written to the last byte of the response read
(time.perf_counter). Before the gets it also times an API request that does no work (an
unknown route, answered 404 after the token check), the floor that HTTP on loopback adds to
every figure.

Prints one JSON line on stdout; progress on stderr. Every wait is bounded.
"""
import argparse
import http.client
import json
import os
import random
import sys
import time

from stats import pct


def log(*a):
    print("[cairn_values]", *a, file=sys.stderr, flush=True)


class Api:
    """One keep-alive connection to a node's API, found through its data directory."""

    def __init__(self, data_dir, timeout):
        with open(os.path.join(data_dir, "api.addr")) as f:
            host, port = f.read().strip().rsplit(":", 1)
        with open(os.path.join(data_dir, "api.token")) as f:
            self.token = f.read().strip()
        assert host == "127.0.0.1", "the API must be on 127.0.0.1, not %s" % host
        self.host, self.port, self.timeout = host, int(port), timeout
        self.conn = None
        self.reconnects = 0

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.conn.connect()

    def request(self, method, path, body=None):
        """(status, body bytes, milliseconds). A connection the server closed while idle is
        opened again and the request sent again (once); only the attempt that answered is
        timed."""
        headers = {"Authorization": "Bearer " + self.token}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Length"] = str(len(body))
        for attempt in range(2):
            if self.conn is None:
                self._connect()
            try:
                t0 = time.perf_counter()
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                ms = (time.perf_counter() - t0) * 1000.0
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, data, ms
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 1:
                    raise
                self.reconnects += 1
        raise AssertionError("unreachable")

    def json(self, method, path):
        status, data, _ = self.request(method, path)
        if status != 200:
            raise RuntimeError("%s %s: HTTP %d %s" % (method, path, status, data[:200]))
        return json.loads(data)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devnet", required=True, help="the devnet's --dir")
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--values", type=int, default=200)
    ap.add_argument("--value-size", type=int, default=1024)
    ap.add_argument("--settle-min-good", type=int, default=8,
                    help="peers each routing table needs before the puts (as opendht_values.py)")
    ap.add_argument("--settle-timeout", type=float, default=30.0)
    ap.add_argument("--settle-extra", type=float, default=2.0)
    ap.add_argument("--op-timeout", type=float, default=30.0, help="per request (s)")
    ap.add_argument("--floor-requests", type=int, default=50)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t_start = time.perf_counter()

    apis = [Api(os.path.join(args.devnet, "node%d" % (i + 1)), args.op_timeout) for i in range(args.nodes)]

    # ---- settle (bounded) ----------------------------------------------------------------
    need = min(args.settle_min_good, args.nodes - 1)
    t0 = time.perf_counter()
    deadline = time.monotonic() + args.settle_timeout
    while True:
        counts = [a.json("GET", "/api/v0/status")["routing_table"] for a in apis]
        if min(counts) >= need or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    settle_s = time.perf_counter() - t0
    counts.sort()
    log("settled in %.2fs; routing table min/median/max = %d/%d/%d"
        % (settle_s, counts[0], counts[len(counts) // 2], counts[-1]))
    time.sleep(args.settle_extra)
    putter, getter = apis[0], apis[-1]
    for a in apis[1:-1]:
        a.close()

    # ---- puts -------------------------------------------------------------------------------
    items, put_ms, put_ok, replicas = [], [], 0, []
    for _ in range(args.values):
        data = bytes(rng.getrandbits(8) for _ in range(args.value_size))
        status, body, ms = putter.request("POST", "/api/v0/put", body=data)
        if status == 200:
            reply = json.loads(body)
            put_ok += 1
            put_ms.append(ms)
            replicas.append(reply.get("replicas", 0))
            items.append((reply["id"], data))
        else:
            log("put: HTTP %d %s" % (status, body[:200]))
            items.append((None, data))
    log("puts: %d/%d ok" % (put_ok, args.values))

    # ---- the API's floor, then gets ------------------------------------------------------------
    floor_ms = []
    for _ in range(args.floor_requests):
        status, _, ms = getter.request("GET", "/api/v0/no-such-route")
        floor_ms.append(ms)
    get_ms, get_ok = [], 0
    for cid, data in items:
        if cid is None:
            continue
        status, body, ms = getter.request("GET", "/api/v0/get/" + cid)
        if status == 200 and body == data:
            get_ok += 1
            get_ms.append(ms)
        else:
            log("get %s: HTTP %d, %d bytes%s" % (cid, status, len(body), "" if status != 200 else " (wrong bytes)"))
    log("gets: %d/%d found" % (get_ok, len(items)))

    out = {
        "system": "cairn",
        "transport": "HTTP/1.1 keep-alive to the node's API on 127.0.0.1 (http.client), one request at a time",
        "nodes": args.nodes,
        "puts": args.values,
        "gets": len(items),
        "value_bytes": args.value_size,
        "settle_s": round(settle_s, 2),
        "routing_table_min_median_max": [counts[0], counts[len(counts) // 2], counts[-1]],
        "put_success_rate": round(put_ok / max(1, args.values), 4),
        "put_p50_ms": pct(put_ms, 50),
        "put_p95_ms": pct(put_ms, 95),
        "put_replicas_median": sorted(replicas)[len(replicas) // 2] if replicas else None,
        "get_p50_ms": pct(get_ms, 50),
        "get_p95_ms": pct(get_ms, 95),
        "get_success_rate": round(get_ok / max(1, len(items)), 4),
        "http_floor_p50_ms": pct(floor_ms, 50),
        "http_floor_p95_ms": pct(floor_ms, 95),
        "reconnects": putter.reconnects + getter.reconnects,
        "total_s": round(time.perf_counter() - t_start, 2),
    }
    putter.close()
    getter.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
