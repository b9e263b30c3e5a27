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
