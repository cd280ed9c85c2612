#!/usr/bin/env bash
# Submit a curation job to a Ray head on this machine, exactly as to a cluster:
#   deploy/submit-local.sh --input your-data --output /tmp/curated [--config my.yaml]
# Starts a head (token auth, as Ray >= 2.52 requires for job clients), submits
# `python -m curate run …` with this checkout as the working dir, waits for it, and stops
# only the head it started (never `ray stop`, which would kill every Ray on the machine).
# Ports: RAY_PORT (default 6380: 6379 is often a Redis server), RAY_DASHBOARD_PORT (8265).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=token
port="${RAY_PORT:-6380}"
dashboard="${RAY_DASHBOARD_PORT:-8265}"
address="http://127.0.0.1:${dashboard}"
log="$(mktemp)"

ray start --head --block --port "$port" --dashboard-port "$dashboard" --num-cpus "${NUM_CPUS:-2}" \
    --disable-usage-stats --include-dashboard=true >"$log" 2>&1 &
head_pid=$!
trap 'kill "$head_pid" 2>/dev/null || true; wait "$head_pid" 2>/dev/null || true; rm -f "$log"' EXIT

# The job agent comes up a few seconds after the head; submitting earlier is refused.
for attempt in $(seq 1 30); do
    if ! kill -0 "$head_pid" 2>/dev/null; then
        echo "ray head failed to start:" >&2; cat "$log" >&2; exit 1
    fi
    if out=$(ray job submit --address "$address" --working-dir . -- python -m curate run "$@" 2>&1); then
        echo "$out"; exit 0
    fi
    if ! grep -qE "No available agent|Connection refused|Failed to connect|ConnectionError" <<<"$out"; then
        echo "$out" >&2; exit 1
    fi
    sleep 2
done
echo "$out" >&2
echo "ray job submit: the head at $address never accepted the job" >&2
exit 1
