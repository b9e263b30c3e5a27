# Shared helpers for scripts/test and scripts/demo (sourced, not run).

# Installs the Debian packages QuotaKeeper needs, only when something is missing.
qk_install_dependencies() {
    local missing=()
    dpkg -s libhiredis-dev >/dev/null 2>&1 || missing+=(libhiredis-dev)
    dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    python3 -c 'import botocore' >/dev/null 2>&1 || missing+=(python3-botocore)  # ElastiCache token reference
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    command -v swift >/dev/null 2>&1 || { echo "swift is not on PATH (Swift 6 toolchain required)" >&2; return 1; }
}

# Prints a loopback TCP port nobody listens on.
qk_free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$(( (RANDOM << 1 | RANDOM & 1) % 30000 + 20000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

# Starts a private, non-persistent redis-server on a free loopback port; sets QK_REDIS_PID, QK_REDIS_URL
# and QK_REDIS_DIR. Stop it with qk_stop_redis.
qk_start_redis() {
    local port
    port=$(qk_free_port) || { echo "no free port for redis-server" >&2; return 1; }
    QK_REDIS_DIR=$(mktemp -d -t quotakeeper-redis.XXXXXX)
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$QK_REDIS_DIR" \
        --logfile "$QK_REDIS_DIR/redis.log" --daemonize yes --pidfile "$QK_REDIS_DIR/redis.pid" >/dev/null
    for _ in $(seq 1 100); do
        if redis-cli -p "$port" ping >/dev/null 2>&1; then
            QK_REDIS_PID=$(cat "$QK_REDIS_DIR/redis.pid")
            QK_REDIS_URL="redis://127.0.0.1:$port"
            echo "started redis-server on 127.0.0.1:$port (pid $QK_REDIS_PID)" >&2
            return 0
        fi
        sleep 0.1
    done
    echo "redis-server did not start; log: $QK_REDIS_DIR/redis.log" >&2
    return 1
}

qk_stop_redis() {
    if [ -n "${QK_REDIS_PID:-}" ]; then
        kill "$QK_REDIS_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$QK_REDIS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$QK_REDIS_PID" 2>/dev/null || true
        QK_REDIS_PID=""
    fi
    [ -n "${QK_REDIS_DIR:-}" ] && rm -rf "$QK_REDIS_DIR"
    QK_REDIS_DIR=""
}

# Starts a private 3-master Redis Cluster (no replicas, no persistence) on free loopback ports; sets
# QK_CLUSTER_URL (its first node) and QK_CLUSTER_DIR. Stop it with qk_stop_cluster.
qk_start_cluster() {
    local nodes=() port bus
    QK_CLUSTER_DIR=$(mktemp -d -t quotakeeper-cluster.XXXXXX)
    for _ in 1 2 3; do
        port=$(qk_free_port) && bus=$(qk_free_port) || { echo "no free port for a cluster node" >&2; return 1; }
        mkdir -p "$QK_CLUSTER_DIR/$port"
        redis-server --port "$port" --cluster-port "$bus" --bind 127.0.0.1 --cluster-enabled yes \
            --cluster-config-file nodes.conf --save '' --appendonly no --dir "$QK_CLUSTER_DIR/$port" \
            --logfile redis.log --daemonize yes --pidfile "$QK_CLUSTER_DIR/$port/redis.pid" >/dev/null
        nodes+=("127.0.0.1:$port")
    done
    for node in "${nodes[@]}"; do
        for _ in $(seq 1 100); do redis-cli -p "${node##*:}" ping >/dev/null 2>&1 && break; sleep 0.1; done
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-yes >/dev/null
    for _ in $(seq 1 100); do
        redis-cli -p "${nodes[0]##*:}" cluster info | grep -q cluster_state:ok && break
        sleep 0.1
    done
    QK_CLUSTER_URL="redis://${nodes[0]}"
    echo "started a 3-master Redis Cluster at ${nodes[*]}" >&2
}

qk_stop_cluster() {
    local pidfile
    [ -n "${QK_CLUSTER_DIR:-}" ] || return 0
    for pidfile in "$QK_CLUSTER_DIR"/*/redis.pid; do
        [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    done
    rm -rf "$QK_CLUSTER_DIR"
    QK_CLUSTER_DIR=""
}
