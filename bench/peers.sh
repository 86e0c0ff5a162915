#!/usr/bin/env bash
# Side-by-side benchmark (issue 12): cairn against sendme (files) and OpenDHT (small values),
# in one run, on the same sizes, on this machine's loopback only.
#
#   bench/peers.sh [--only files|values] [--size-mib 256] [--pairs 5] [--file-nodes 12]
#                  [--value-nodes 32] [--values 200] [--value-size 1024] [--settle 2]
#                  [--cache DIR] [--json]
#
# Files:  a network of --file-nodes cairn nodes (`cairn devnet` with one node fewer, plus the
#         getter as its own `cairn daemon` process, so that its memory is its own). Each pair
#         makes a fresh random file, `cairn put`s it through node 1 (5 replicas), then runs
#         `cairn get` through the getter's daemon and `sendme receive` of the same file, in
#         alternating order. Figures: MB/s of each, put MB/s, the getter's peak RSS.
# Values: a `cairn devnet` of --value-nodes nodes; --values random values put one at a time
#         through node 1's HTTP API and read back through node N's; then OpenDHT's
#         --value-nodes nodes in one process, the same counts. Figures: p50/p95 of each.
# Prints a table of ratios cairn/peer (stdout; with --json the table goes to stderr and one
# JSON object to stdout). Progress goes to stderr.
#
# Installs what is missing: /usr/bin/time, iproute2, dhtnode and python3-opendht (apt-get, as
# root); sendme ($SENDME_VERSION, `cargo install --locked`) into the cache directory
# (${XDG_CACHE_HOME:-$HOME/.cache}/cairn-bench); cairn itself is built with
# `cargo build --release -p cairn-cli` (into $CARGO_TARGET_DIR or target/) unless $CAIRN names
# a binary.
#
# No traffic leaves the machine: sendme and dhtnode try the internet when they start, so the
# script re-executes itself in a private network namespace (`unshare --net`) whose only
# interface is `lo`, and refuses to run anything there if another interface shows up. Every
# process it starts is stopped on exit and its scratch directory removed. Not part of .ci/run.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
PY=/usr/bin/python3          # Debian's: python3-opendht is built for it
TIME_BIN=/usr/bin/time       # GNU time, for peak RSS of a process (%M)

ONLY=all SIZE_MIB=256 PAIRS=5 FILE_NODES=12 VALUE_NODES=32 VALUES=200 VALUE_SIZE=1024
SETTLE_S=2 JSON=0
CACHE="${CAIRN_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn-bench}"
SENDME_VERSION="${SENDME_VERSION:-0.37.1}"
# Bounds (seconds) for every wait.
READY_TIMEOUT_S="${READY_TIMEOUT_S:-180}"   # devnet / daemon start, sendme ticket
OP_TIMEOUT_S="${OP_TIMEOUT_S:-600}"         # one put, get or receive of a file
VALUES_TIMEOUT_S="${VALUES_TIMEOUT_S:-900}" # one side of the values benchmark

log() { echo "[peers] $*" >&2; }
die() { log "error: $*"; exit 2; }

usage() { sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//'; }

ARGS=("$@")
while [[ $# -gt 0 ]]; do
    case "$1" in
        --only) ONLY="${2:-}"; shift 2 ;;
        --size-mib) SIZE_MIB="${2:-}"; shift 2 ;;
        --pairs) PAIRS="${2:-}"; shift 2 ;;
        --file-nodes) FILE_NODES="${2:-}"; shift 2 ;;
        --value-nodes) VALUE_NODES="${2:-}"; shift 2 ;;
        --values) VALUES="${2:-}"; shift 2 ;;
        --value-size) VALUE_SIZE="${2:-}"; shift 2 ;;
        --settle) SETTLE_S="${2:-}"; shift 2 ;;
        --cache) CACHE="${2:-}"; shift 2 ;;
        --json) JSON=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
case "$ONLY" in all|files|values) ;; *) die "--only takes files or values" ;; esac
for v in SIZE_MIB PAIRS FILE_NODES VALUE_NODES VALUES VALUE_SIZE SETTLE_S; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
((SIZE_MIB >= 1 && PAIRS >= 1 && VALUES >= 1 && VALUE_SIZE >= 1)) || die "sizes and counts must be at least 1"
((FILE_NODES >= 7 && FILE_NODES <= 201)) || die "--file-nodes must be 7..201 (5 replicas besides the putter and the getter)"
((VALUE_NODES >= 2 && VALUE_NODES <= 200)) || die "--value-nodes must be 2..200"
want_files() { [[ "$ONLY" == all || "$ONLY" == files ]]; }
want_values() { [[ "$ONLY" == all || "$ONLY" == values ]]; }

# ---- outside the namespace: install what is missing, build cairn, re-execute ----------------
if [[ "${CAIRN_BENCH_IN_NETNS:-}" != "1" ]]; then
    [[ $EUID -eq 0 ]] || die "run as root: unshare --net and apt-get need it"
    pkgs=()
    [[ -x $TIME_BIN ]] || pkgs+=(time)
    command -v ip >/dev/null || pkgs+=(iproute2)
    command -v unshare >/dev/null || pkgs+=(util-linux)
    [[ -x $PY ]] || pkgs+=(python3)
    if want_values; then
        command -v dhtnode >/dev/null || pkgs+=(dhtnode)
        { [[ -x $PY ]] && $PY -c 'import opendht' 2>/dev/null; } || pkgs+=(python3-opendht)
    fi
    if [[ ${#pkgs[@]} -gt 0 ]]; then
        log "installing ${pkgs[*]} (apt-get)"
        apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >&2
    fi
    if want_files; then
        SENDME="${SENDME:-$CACHE/bin/sendme}"
        if [[ ! -x "$SENDME" ]] || [[ "$("$SENDME" --version 2>/dev/null | awk '{print $2}')" != "$SENDME_VERSION" ]]; then
            [[ "$SENDME" == "$CACHE/bin/sendme" ]] || die "SENDME=$SENDME is not sendme $SENDME_VERSION"
            command -v cargo >/dev/null || die "cargo is needed to install sendme"
            log "installing sendme $SENDME_VERSION into $CACHE (cargo install --locked; minutes)"
            mkdir -p "$CACHE"
            cargo install sendme --version "$SENDME_VERSION" --locked --root "$CACHE" >&2
        fi
        export SENDME
    fi
    if [[ -z "${CAIRN:-}" ]]; then
        command -v cargo >/dev/null || die "cargo is needed to build cairn (or set CAIRN)"
        log "building cairn (cargo build --release -p cairn-cli)"
        (cd "$ROOT" && cargo build --release -p cairn-cli >&2)
        target="${CARGO_TARGET_DIR:-$ROOT/target}"
        [[ "$target" == /* ]] || target="$ROOT/$target"
        CAIRN="$target/release/cairn"
    fi
    [[ -x "$CAIRN" ]] || die "no cairn binary at $CAIRN"
    export CAIRN
    COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- cli/src node/src dht/src 2>/dev/null)" ]]; then
        COMMIT="$COMMIT+dirty"
    fi
    export COMMIT
    export CAIRN_BENCH_IN_NETNS=1
    exec unshare --net -- bash "$SELF" "${ARGS[@]}"
fi

# ---- inside the private network namespace -----------------------------------------------------
ip link set lo up
if ip -o link show | grep -qv ': lo:'; then
    die "a non-loopback interface is in the namespace; refusing to run"
fi
only_loopback() {  # checked again before each sendme start
    ! ip -o link show | grep -qv ': lo:' || die "not in a loopback-only namespace; refusing to run sendme"
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cairn-peers.XXXXXX")"
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
# The CLI must not read the user's config or talk to another daemon.
: > "$WORK/config.toml"
export CAIRN_CONFIG="$WORK/config.toml"
unset CAIRN_API CAIRN_TOKEN CAIRN_DATA_DIR RUST_LOG

PIDS=()
stop_pid() {  # SIGINT (clean stop), then SIGKILL after 30 s
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -INT "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }
hwm_kb() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo null; }
# jfield FILE PATH: a field of the first JSON line of FILE, by a dotted path (a.0.b).
jfield() {
    "$PY" - "$1" "$2" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    v = json.loads(f.readline())
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(json.dumps(v) if isinstance(v, (dict, list)) else v)
EOF
}
# status DATA_DIR FIELD: a field of `cairn status --json`
status_field() {
    timeout 30 "$CAIRN" --data-dir "$1" --json status > "$WORK/status.json" && jfield "$WORK/status.json" "$2"
}

# start_devnet N DIR: a devnet of N nodes in DIR, in the background, until it is ready.
start_devnet() {
    local n="$1" dir="$2" i
    log "starting a devnet of $n nodes"
    : > "$dir.out"; : > "$dir.err"
    "$CAIRN" --json devnet --nodes "$n" --dir "$dir" > "$dir.out" 2> "$dir.err" < /dev/null &
    DEVNET_PID=$!
    PIDS+=("$DEVNET_PID")
    for ((i = 0; i < READY_TIMEOUT_S * 5; i++)); do
        grep -q '"event":"ready"' "$dir.out" 2>/dev/null && return 0
        kill -0 "$DEVNET_PID" 2>/dev/null || { cat "$dir.err" >&2; die "the devnet exited early"; }
        sleep 0.2
    done
    cat "$dir.err" >&2
    die "the devnet was not ready within ${READY_TIMEOUT_S}s"
}

# ---- files: cairn get against sendme receive --------------------------------------------------
cairn_get() {  # pair id
    local pair="$1" id="$2" out="$WORK/get-out.bin" t0 t1 rc c0 c1 rss0 hwm cli_kb ok=false
    c0=$(status_field "$GETTER_DIR" chunks)
    # Peak RSS of the getter's daemon during this get alone: clear_refs 5 resets VmHWM.
    echo 5 > "/proc/$GETTER_PID/clear_refs" || true
    rss0=$(awk '/^VmRSS:/{print $2}' "/proc/$GETTER_PID/status" 2>/dev/null || echo null)
    t0=$(now)
    set +e
    timeout "$OP_TIMEOUT_S" "$TIME_BIN" -f %M -o "$WORK/get.rss" \
        "$CAIRN" --data-dir "$GETTER_DIR" -q get "$id" -o "$out" > "$WORK/get.out" 2> "$WORK/get.err" < /dev/null
    rc=$?
    set -e
    t1=$(now)
    hwm=$(hwm_kb "$GETTER_PID")
    cli_kb=$(tail -1 "$WORK/get.rss" 2>/dev/null || echo null)
    [[ "$cli_kb" =~ ^[0-9]+$ ]] || cli_kb=null
    c1=$(status_field "$GETTER_DIR" chunks)
    if [[ $rc -eq 0 ]] && cmp -s "$SRC" "$out"; then ok=true; else log "cairn get failed (rc=$rc): $(head -c 500 "$WORK/get.err")"; fi
    rm -f "$out"
    printf '{"kind":"cairn_get","pair":%d,"bytes":%d,"seconds":%s,"ok":%s,"daemon_rss_before_kb":%s,"daemon_hwm_kb":%s,"cli_max_rss_kb":%s,"chunks_before":%s,"chunks_after":%s}\n' \
        "$pair" "$BYTES" "$(elapsed "$t0" "$t1")" "$ok" "$rss0" "$hwm" "$cli_kb" "$c0" "$c1" >> "$RESULTS"
    log "pair $pair: cairn get $(elapsed "$t0" "$t1") s, ok=$ok, getter daemon VmRSS ${rss0} kB before, VmHWM ${hwm} kB, CLI ${cli_kb} kB, chunks fetched $((c1 - c0))"
}

sendme_get() {  # pair
    local pair="$1" sdir="$WORK/sendme-send" rdir="$WORK/sendme-recv" t0 t1 tr rc ticket="" i send_pid send_hwm recv_kb ok=false
    only_loopback
    rm -rf "$sdir" "$rdir"; mkdir -p "$sdir" "$rdir"
    local common=(--relay disabled --magic-ipv4-addr 127.0.0.1:0 --magic-ipv6-addr '[::1]:0' --no-progress)
    : > "$WORK/send.out"; : > "$WORK/send.err"   # the background job opens them after it forks
    t0=$(now)
    (cd "$sdir" && exec "$SENDME" send "${common[@]}" --ticket-type addresses "$SRC") \
        > "$WORK/send.out" 2> "$WORK/send.err" < /dev/null &
    send_pid=$!
    PIDS+=("$send_pid")
    for ((i = 0; i < READY_TIMEOUT_S * 10; i++)); do
        kill -0 "$send_pid" 2>/dev/null || { cat "$WORK/send.out" "$WORK/send.err" >&2; die "sendme send exited early"; }
        ticket=$(awk '/^sendme receive /{print $3; exit}' "$WORK/send.out" 2>/dev/null || true)
        [[ -n "$ticket" ]] && break
        sleep 0.1
    done
    [[ -n "$ticket" ]] || die "sendme gave no ticket within ${READY_TIMEOUT_S}s"
    tr=$(now)
    set +e
    (cd "$rdir" && exec timeout "$OP_TIMEOUT_S" "$TIME_BIN" -f %M -o "$WORK/recv.rss" \
        "$SENDME" receive "${common[@]}" "$ticket") > "$WORK/recv.out" 2> "$WORK/recv.err" < /dev/null
    rc=$?
    set -e
    t1=$(now)
    send_hwm=$(hwm_kb "$send_pid")
    stop_pid "$send_pid"
    recv_kb=$(tail -1 "$WORK/recv.rss" 2>/dev/null || echo null)
    [[ "$recv_kb" =~ ^[0-9]+$ ]] || recv_kb=null
    if [[ $rc -eq 0 ]] && cmp -s "$SRC" "$rdir/$(basename "$SRC")"; then ok=true; else log "sendme receive failed (rc=$rc): $(head -c 500 "$WORK/recv.err")"; fi
    rm -rf "$sdir" "$rdir"
    printf '{"kind":"sendme_get","pair":%d,"bytes":%d,"seconds":%s,"ok":%s,"sender_ready_s":%s,"receiver_max_rss_kb":%s,"sender_hwm_kb":%s}\n' \
        "$pair" "$BYTES" "$(elapsed "$tr" "$t1")" "$ok" "$(elapsed "$t0" "$tr")" "$recv_kb" "$send_hwm" >> "$RESULTS"
    log "pair $pair: sendme receive $(elapsed "$tr" "$t1") s, ok=$ok, receiver ${recv_kb} kB"
}

run_files() {
    BYTES=$((SIZE_MIB * 1024 * 1024))
    local dev="$WORK/files-devnet" boot i t0 t1 rc id prt grt rt=0
    start_devnet $((FILE_NODES - 1)) "$dev"
    boot=$(jfield "$dev.out" nodes.0.addrs.0)
    GETTER_DIR="$WORK/files-getter"
    log "starting the getter: cairn daemon, node $FILE_NODES of the network, bootstrapped through node 1"
    "$CAIRN" --data-dir "$GETTER_DIR" --api 127.0.0.1:0 --json daemon --local-network \
        --listen /ip4/127.0.0.1/udp/0/quic-v1 --listen /ip4/127.0.0.1/tcp/0 --bootstrap "$boot" \
        > "$WORK/getter.out" 2> "$WORK/getter.err" < /dev/null &
    GETTER_PID=$!
    PIDS+=("$GETTER_PID")
    for ((i = 0; i < READY_TIMEOUT_S * 5; i++)); do
        kill -0 "$GETTER_PID" 2>/dev/null || { cat "$WORK/getter.err" >&2; die "the getter daemon exited early"; }
        if [[ -s "$GETTER_DIR/api.addr" ]]; then
            rt=$(status_field "$GETTER_DIR" routing_table 2>/dev/null || echo 0)
            ((rt >= FILE_NODES - 2)) && break
        fi
        sleep 0.2
    done
    ((rt >= FILE_NODES - 2)) || die "the getter knew $rt peers after ${READY_TIMEOUT_S}s, not $((FILE_NODES - 2))"
    log "getter joined: $rt peers in its routing table"
    SRC="$WORK/random-${SIZE_MIB}MiB.bin"
    for ((i = 1; i <= PAIRS; i++)); do
        log "pair $i/$PAIRS: a fresh $SIZE_MIB MiB random file"
        head -c "$BYTES" /dev/urandom > "$SRC"
        prt=$(status_field "$dev/node1" routing_table)
        grt=$(status_field "$GETTER_DIR" routing_table)
        t0=$(now)
        set +e
        timeout "$OP_TIMEOUT_S" "$CAIRN" --data-dir "$dev/node1" --json -q put "$SRC" > "$WORK/put.json" 2> "$WORK/put.err" < /dev/null
        rc=$?
        set -e
        t1=$(now)
        [[ $rc -eq 0 ]] || { cat "$WORK/put.err" >&2; die "cairn put failed (rc=$rc)"; }
        id=$(jfield "$WORK/put.json" id)
        printf '{"kind":"cairn_put","pair":%d,"bytes":%d,"seconds":%s,"chunks":%s,"replicas":%s,"replica_failures":%s,"putter_routing_table":%s,"getter_routing_table":%s}\n' \
            "$i" "$BYTES" "$(elapsed "$t0" "$t1")" "$(jfield "$WORK/put.json" chunks)" \
            "$(jfield "$WORK/put.json" replicas)" "$(jfield "$WORK/put.json" replica_failures)" "$prt" "$grt" >> "$RESULTS"
        log "pair $i: cairn put $(elapsed "$t0" "$t1") s, $(jfield "$WORK/put.json" chunks) chunks, $(jfield "$WORK/put.json" replicas) replicas (routing tables before: node1 $prt, getter $grt)"
        sleep "$SETTLE_S"
        if ((i % 2 == 1)); then cairn_get "$i" "$id"; sendme_get "$i"; else sendme_get "$i"; cairn_get "$i" "$id"; fi
        rm -f "$SRC"
    done
    printf '{"kind":"files_setup","getter_routing_table":%s,"devnet_hwm_kb":%s,"getter_hwm_kb_total":%s}\n' \
        "$rt" "$(hwm_kb "$DEVNET_PID")" "$(hwm_kb "$GETTER_PID")" >> "$RESULTS"
    stop_pid "$GETTER_PID"
    stop_pid "$DEVNET_PID"
    rm -rf "$dev" "$GETTER_DIR"
}

# ---- values: cairn's HTTP API against OpenDHT ---------------------------------------------------
run_values() {
    local dev="$WORK/values-devnet"
    start_devnet "$VALUE_NODES" "$dev"
    log "cairn: $VALUES values of $VALUE_SIZE B, put on node1, got on node$VALUE_NODES"
    timeout "$VALUES_TIMEOUT_S" "$PY" "$HERE/cairn_values.py" --devnet "$dev" --nodes "$VALUE_NODES" \
        --values "$VALUES" --value-size "$VALUE_SIZE" > "$WORK/cairn_values.json" \
        || die "the cairn values benchmark failed"
    {
        printf '{"kind":"cairn_values","devnet_hwm_kb":%s,"result":' "$(hwm_kb "$DEVNET_PID")"
        tr -d '\n' < "$WORK/cairn_values.json"
        printf '}\n'
    } >> "$RESULTS"
    stop_pid "$DEVNET_PID"
    rm -rf "$dev"
    log "OpenDHT: $VALUE_NODES nodes in one process, the same $VALUES values of $VALUE_SIZE B"
    timeout "$VALUES_TIMEOUT_S" "$PY" "$HERE/opendht_values.py" --nodes "$VALUE_NODES" \
        --puts "$VALUES" --value-size "$VALUE_SIZE" > "$WORK/opendht_values.json" \
        || die "the OpenDHT values benchmark failed"
    {
        printf '{"kind":"opendht_values","result":'
        tr -d '\n' < "$WORK/opendht_values.json"
        printf '}\n'
    } >> "$RESULTS"
}

STARTED="$(date -u +%FT%TZ)"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
want_files && run_files
want_values && run_values
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

SENDME_V=""
want_files && SENDME_V="$("$SENDME" --version | awk '{print $2}')"
OPENDHT_V=""
want_values && OPENDHT_V="$(dpkg-query -W -f '${Version}' python3-opendht 2>/dev/null || echo unknown)"
"$PY" "$HERE/report.py" "$RESULTS" --json "$JSON" --meta \
    "command=bench/peers.sh ${ARGS[*]}" "started=$STARTED" "commit=$COMMIT" \
    "cores=$(nproc)" "mem_gib=$(awk '/^MemTotal:/{printf "%.0f", $2/1048576}' /proc/meminfo)" \
    "load_before=$LOAD_BEFORE" "load_after=$LOAD_AFTER" "sendme=$SENDME_V" "opendht=$OPENDHT_V" \
    "cairn=$("$CAIRN" --version | awk '{print $2}')" "size_mib=$SIZE_MIB" "pairs=$PAIRS" \
    "file_nodes=$FILE_NODES" "value_nodes=$VALUE_NODES" "values=$VALUES" "value_size=$VALUE_SIZE"
