#!/usr/bin/env bash
# Submit a curation job to a Ray head on this machine, exactly as to a cluster:
#   deploy/submit-local.sh --input your-data --output /tmp/curated [--config my.yaml]
#
# Starts its own head (token auth, as Ray >= 2.52 requires for job clients), submits
# `python -m curate run …` with this checkout as the working dir, waits for the job, and on
# exit (success, failure, Ctrl-C, SIGTERM, SIGHUP) stops the head it started: every process
# of the head's session and every process below one (the job's driver has a session of its
# own). If this script is SIGKILLed, a watchdog stops the head. Never `ray stop`: that kills
# every Ray on the machine.
#
# Every port the head binds comes from the environment, else a port free at start, so two
# heads on one machine never collide: RAY_PORT (GCS), RAY_DASHBOARD_PORT,
# RAY_DASHBOARD_AGENT_LISTEN_PORT, RAY_DASHBOARD_AGENT_GRPC_PORT, RAY_METRICS_EXPORT_PORT,
# RAY_NODE_MANAGER_PORT, RAY_OBJECT_MANAGER_PORT, RAY_CLIENT_SERVER_PORT,
# RAY_RUNTIME_ENV_AGENT_PORT, RAY_MIN_WORKER_PORT..RAY_MAX_WORKER_PORT (a free range of
# RAY_WORKER_PORTS, default 200). RAY_TEMP_DIR: the head's temp dir (default a new
# /tmp/rsub.* removed on exit; keep it short: Unix socket paths are capped at 107 bytes).
# RAY_AUTH_TOKEN: the head's token (default a new random one; ~/.ray/auth_token is not used).
# NUM_CPUS: the head's CPUs (2). SUBMIT_TRIES: seconds/2 to wait for the job agent (30).
set -euo pipefail

# --input/--output/--config as typed by the caller: a relative local path is made absolute
# against the caller's directory (the job runs in a copy of this checkout, where a relative
# path would point elsewhere; `curate run` refuses a relative --output under a job).
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --input|--output|--config)
            [[ $# -ge 2 ]] || { echo "submit-local.sh: $1 needs a value" >&2; exit 2; }
            value="$2"
            [[ "$value" == *://* || "$value" == /* ]] || value="$PWD/$value"
            args+=("$1" "$value"); shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
set -- "${args[@]}"
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"

head_pid="" submit_pid="" watchdog_pid="" own_tmp=""
log="$(mktemp)"
out="$(mktemp)"

# The head runs in a session of its own (setsid: session id = its pid). Its members: every
# process of that session (workers have process groups of their own) and every process below
# one of them (the job's driver has a session of its own).
head_members() {
    ps -eo pid=,ppid=,sid= | awk -v sid="$1" '
        { parent[$1] = $2; if ($3 == sid) found[$1] = 1 }
        END { grew = 1
              while (grew) { grew = 0
                  for (p in parent) if (!(p in found) && (parent[p] in found)) { found[p] = 1; grew = 1 } }
              for (p in found) print p }'
}

stop_head() {  # SIGTERM every member, SIGKILL what is left after 3 s (a graceful Ray stop takes 10+)
    local seen live attempt
    seen="$(head_members "$1")"
    [[ -n "$seen" ]] || return 0
    kill -TERM $seen 2>/dev/null || true
    for attempt in $(seq 1 12); do
        live="$(head_members "$1")"
        [[ -n "$live" ]] || break
        sleep 0.25
    done
    live="$(head_members "$1")"
    for p in $seen; do kill -0 "$p" 2>/dev/null && live="$live $p"; done
    [[ -z "${live// /}" ]] || kill -KILL $live 2>/dev/null || true
}
export -f head_members stop_head

cleanup() {
    local rc=$?
    trap '' INT TERM HUP  # a second Ctrl-C must not cut the cleanup short
    trap - EXIT
    [[ -z "$submit_pid" ]] || kill -TERM "$submit_pid" 2>/dev/null || true
    if [[ -n "$head_pid" ]]; then
        stop_head "$head_pid"
        wait "$head_pid" 2>/dev/null || true
    fi
    [[ -z "$own_tmp" ]] || rm -rf "$own_tmp"
    [[ -z "$watchdog_pid" ]] || kill "$watchdog_pid" 2>/dev/null || true
    rm -f "$log" "$out"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Distinct free ports (held together while chosen) and a free range for workers.
read -r -a free < <("$py" - "${RAY_WORKER_PORTS:-200}" <<'EOF'
import random, socket, sys
held = []
def grab(port=0):
    s = socket.socket()
    s.bind(("", port))
    held.append(s)
    return s.getsockname()[1]
ports = [grab() for _ in range(9)]
count = int(sys.argv[1])
for _ in range(200):
    base = random.randrange(20000, 32000 - count)  # below the kernel's ephemeral range
    try:
        [grab(p) for p in range(base, base + count)]
        break
    except OSError:
        continue
else:
    sys.exit("no free range of worker ports")
print(*ports, base, base + count - 1)
EOF
)
[[ ${#free[@]} -eq 11 ]] || { echo "submit-local.sh: could not pick free ports" >&2; exit 1; }
gcs_port="${RAY_PORT:-${free[0]}}"
dashboard_port="${RAY_DASHBOARD_PORT:-${free[1]}}"
address="http://127.0.0.1:${dashboard_port}"
temp_dir="${RAY_TEMP_DIR:-}"
if [[ -z "$temp_dir" ]]; then
    own_tmp="$(mktemp -d /tmp/rsub.XXXXXX)"
    temp_dir="$own_tmp"
fi
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN="${RAY_AUTH_TOKEN:-$("$py" -c 'import secrets; print(secrets.token_hex(32))')}"

ports=(
    gcs="$gcs_port" dashboard="$dashboard_port"
    dashboard-agent-listen="${RAY_DASHBOARD_AGENT_LISTEN_PORT:-${free[2]}}"
    dashboard-agent-grpc="${RAY_DASHBOARD_AGENT_GRPC_PORT:-${free[3]}}"
    metrics-export="${RAY_METRICS_EXPORT_PORT:-${free[4]}}"
    node-manager="${RAY_NODE_MANAGER_PORT:-${free[5]}}"
    object-manager="${RAY_OBJECT_MANAGER_PORT:-${free[6]}}"
    ray-client-server="${RAY_CLIENT_SERVER_PORT:-${free[7]}}"
    runtime-env-agent="${RAY_RUNTIME_ENV_AGENT_PORT:-${free[8]}}"
    min-worker="${RAY_MIN_WORKER_PORT:-${free[9]}}"
    max-worker="${RAY_MAX_WORKER_PORT:-${free[10]}}"
)
flags=()
for p in "${ports[@]}"; do
    name="${p%%=*}"
    case "$name" in gcs) flags+=(--port "${p#*=}") ;; *) flags+=("--${name}-port" "${p#*=}") ;; esac
done

# The head in a session of its own: never signalled with the caller's terminal or process
# group, stopped by its members (head_members), never confused with another head.
setsid ray start --head --block --disable-usage-stats --include-dashboard=true \
    --num-cpus "${NUM_CPUS:-2}" --temp-dir "$temp_dir" "${flags[@]}" >"$log" 2>&1 </dev/null &
head_pid=$!
echo "ray head: pid $head_pid; ports ${ports[*]}; dashboard $address; temp dir $temp_dir" >&2

# If this script is SIGKILLed (no trap runs), stop the head; after a normal exit the log is
# gone and the watchdog does nothing.
setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done
    if [[ -e "$2" ]]; then stop_head "$3"; rm -rf "$2" "$4"; fi' watchdog "$$" "$log" "$head_pid" "$own_tmp" </dev/null >/dev/null 2>&1 &
watchdog_pid=$!

# The job agent comes up a few seconds after the head; submitting earlier is refused.
# Each step runs in the background and is waited for, so a signal is handled at once.
for attempt in $(seq 1 "${SUBMIT_TRIES:-30}"); do
    if ! kill -0 "$head_pid" 2>/dev/null; then
        echo "ray head failed to start:" >&2; cat "$log" >&2; exit 1
    fi
    ray job submit --address "$address" --working-dir . -- python -m curate run "$@" >"$out" 2>&1 </dev/null &
    submit_pid=$!
    status=0; wait "$submit_pid" || status=$?
    submit_pid=""
    if [[ $status -eq 0 ]]; then
        cat "$out"; exit 0
    fi
    # Retry only a refused submission, never a job that was accepted (its logs may say anything).
    if grep -q "submitted successfully" "$out" ||
        ! grep -qE "No available agent|Connection refused|Failed to connect|ConnectionError" "$out"; then
        cat "$out" >&2; exit 1
    fi
    sleep 2 & wait $! || true
done
cat "$out" >&2
echo "ray job submit: the head at $address never accepted the job" >&2
exit 1
