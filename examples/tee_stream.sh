#!/usr/bin/env bash
# Tee a recorded `microag -p` stream into the sidecar, as you would a live run, then read
# the session back through the daemon.
#
# usage: examples/tee_stream.sh [DB]   (default: a temporary file, removed at the end)
#
# Live it is one line; the sidecar only listens and nobody reads its stdout:
#   microag -p "..." | tee >(microagents-sidecar --db "$DB" > /dev/null) | your-consumer
# A script that must know when the sidecar has committed everything gives tee a FIFO the
# sidecar reads, and waits for the sidecar's exit code, as below.
#
# The stream ends with the runtime's error object ({"jsonrpc":"2.0","id":1,"error":...}),
# which `microag -p` prints when a run fails. It is a JSON-RPC *response*, not an event:
# the sidecar ignores it (PROTOCOL.md §3) and stores every event before it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
stream="$here/headless_stream.jsonl"
session=6f1c2a9e-3b7d-4c41-9a55-0d2e8f4b7c10
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
db=${1:-$work/sessions.db}

if ! command -v microagents-sidecar > /dev/null; then
    echo "microagents-sidecar is not on PATH (pip install . first)" >&2
    exit 127
fi

mkfifo "$work/events"
microagents-sidecar --db "$db" < "$work/events" > /dev/null &
sidecar=$!
# `cat` stands in for the runtime; its own output goes on (here, to /dev/null).
cat "$stream" | tee "$work/events" > /dev/null
wait "$sidecar"  # 0: end of input reached and every event committed
echo "stored $(grep -c '"method"' "$stream") events of session $session in $db"

# Read it back: one request on the daemon's stdin, its answer on stdout.
printf '{"jsonrpc":"2.0","id":1,"method":"storage.get_session","params":{"session_id":"%s"}}\n' "$session" |
    microagents-sidecar --db "$db"
