#!/usr/bin/env bash
# py-spiffe (PyPI `spiffe`) against the spike-dev-agent binary: an independent Workload API
# client must get the expected X509-SVID, on a per-identity socket and on the shared socket
# (attested by the caller's uid).
#
#   tests/interop/python/run.sh [path/to/spike-dev-agent]
#   PYTHON=.ci/.venv/bin/python tests/interop/python/run.sh target/debug/spike-dev-agent
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
agent=${1:-$root/target/debug/spike-dev-agent}
python=${PYTHON:-python3}
if [ ! -x "$agent" ]; then
  cargo build --quiet --manifest-path "$root/Cargo.toml" -p spike-dev-agent
fi
"$python" -c 'import spiffe' 2>/dev/null || {
  echo "py-spiffe missing for $python: pip install spiffe" >&2
  exit 1
}

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$agent" --socket-dir "$work/s" --svid-ttl 1m \
  --entry "py=spiffe://spike.ist/interop/python,unix:uid:$(id -u)" \
  >"$work/agent.out" 2>"$work/agent.err" &
pid=$!
for _ in $(seq 1 100); do # at most 10 s for the sockets to appear
  [ -S "$work/s/agent.sock" ] && break
  sleep 0.1
done
if [ ! -S "$work/s/agent.sock" ]; then
  echo "spike-dev-agent did not start:" >&2
  cat "$work/agent.err" >&2
  exit 1
fi

"$python" "$here/fetch_svid.py" --socket "unix://$work/s/nexus.sock" \
  --expect-id spiffe://spike.ist/spike/nexus
"$python" "$here/fetch_svid.py" --socket "unix://$work/s/agent.sock" \
  --expect-id spiffe://spike.ist/interop/python
echo "py-spiffe interop: 2 passed, 0 failed"
