#!/usr/bin/env bash
# Builds the four images from binaries already built on this host (the Containerfiles'
# `prebuilt` stage: no registry is contacted) and runs a whole system from them:
#
#   spike-dev-agent (host)  one Workload API socket, entries selected by uid, mounted read-only
#   spike-keeper   image, uid 65533
#   spike-nexus    image, uid 65532 (the image's user), sled on a host directory
#   spike-bootstrap image, uid 65534: deals the root key; Nexus recovers and verifies it
#   spike          image, uid 65535 (Pilot superuser): secret put, then secret get
#
# and checks each image: user 65532:65532, the entrypoint, SPIKE's path (/nexus, /keeper,
# /bootstrap), `--version` runs, /bin/sh does not exist.
#
# Needs: buildah (Debian: apt-get install buildah), root, and the
# binaries in SPIKE_IMAGE_BIN_DIR (default target/debug: `cargo build --bins`). Debug info is
# stripped from the copies that go into the images. Everything (image storage included) lives
# in a temporary directory that is removed at the end. About 1 minute.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN_DIR="${SPIKE_IMAGE_BIN_DIR:-target/debug}"
TAG=smoke
for b in spike-nexus spike-keeper spike-bootstrap spike spike-dev-agent; do
  [ -x "$BIN_DIR/$b" ] || { echo "$BIN_DIR/$b missing: cargo build --bins first" >&2; exit 1; }
done
command -v buildah >/dev/null 2>&1 || { echo "buildah not found (Debian: apt-get install buildah)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "run as root: containers run as several uids and the data dir is chowned" >&2; exit 1; }

work="$(mktemp -d)"
B=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done >&2
  fi
  "${B[@]}" rm --all >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n--- images: %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

step "build (prebuilt stage, binaries from $BIN_DIR)"
# The build context is a directory of its own holding only target/oci-rootfs: the prebuilt
# stage needs nothing else, and buildah will not follow a `target` that is a symbolic link.
ctx="$work/context"
declare -A LINK=([nexus]=/nexus [keeper]=/keeper [bootstrap]=/bootstrap [spike]="")
for c in nexus keeper bootstrap spike; do
  img=$([ "$c" = spike ] && echo spike || echo "spike-$c")
  # shellcheck disable=SC2086 # LINK is empty for the CLI
  deploy/images/rootfs.sh "$BIN_DIR/$img" "$ctx/target/oci-rootfs/$img" ${LINK[$c]} > /dev/null
  strip --strip-debug "$ctx/target/oci-rootfs/$img/usr/local/bin/$img"
  t0=$(date +%s)
  "${B[@]}" bud --quiet --isolation chroot --build-arg BINARIES=prebuilt \
    -f "deploy/images/$c.Containerfile" -t "localhost/spike-rs/$img:$TAG" "$ctx" > /dev/null
  size=$(du -sh "$ctx/target/oci-rootfs/$img" | cut -f1)
  echo "$img: built in $(( $(date +%s) - t0 )) s (root filesystem $size)"
done

step "image metadata, no shell"
for c in nexus keeper bootstrap spike; do
  img=$([ "$c" = spike ] && echo spike || echo "spike-$c")
  ref="localhost/spike-rs/$img:$TAG"
  user=$("${B[@]}" inspect --format '{{.OCIv1.Config.User}}' "$ref")
  entry=$("${B[@]}" inspect --format '{{.OCIv1.Config.Entrypoint}}' "$ref")
  [ "$user" = "65532:65532" ] || fail "$img: user $user"
  [ "$entry" = "[/usr/local/bin/$img]" ] || fail "$img: entrypoint $entry"
  ctr=$("${B[@]}" from --name "check-$img" "$ref")
  "${B[@]}" run --isolation chroot "$ctr" -- "/usr/local/bin/$img" --version > "$work/version"
  if [ -n "${LINK[$c]}" ]; then
    "${B[@]}" run --isolation chroot "$ctr" -- "${LINK[$c]}" --version > /dev/null || fail "$img: ${LINK[$c]} does not run"
  fi
  if "${B[@]}" run --isolation chroot "$ctr" -- /bin/sh -c true > /dev/null 2>&1; then
    fail "$img: /bin/sh exists"
  fi
  "${B[@]}" rm "$ctr" > /dev/null
  echo "$img: user $user, entrypoint $entry, $(cat "$work/version"), no /bin/sh"
done

step "a system from the images"
mkdir -p "$work/agent" "$work/data"
chown 65532:65532 "$work/data"
"$BIN_DIR/spike-dev-agent" --socket-dir "$work/agent" --no-default-entries \
  --entry 'nexus=spiffe://spike.ist/spike/nexus,unix:uid:65532' \
  --entry 'keeper=spiffe://spike.ist/spike/keeper,unix:uid:65533' \
  --entry 'bootstrap=spiffe://spike.ist/spike/bootstrap,unix:uid:65534' \
  --entry 'pilot=spiffe://spike.ist/spike/pilot/role/superuser,unix:uid:65535' \
  > "$work/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$work/agent/agent.sock" ] && break; sleep 0.1; done
[ -S "$work/agent/agent.sock" ] || fail "dev agent did not start"

keeper_port=$(free_port)
nexus_port=$(free_port)
common=(-v "$work/agent:/spiffe-workload-api:ro"
  -e SPIFFE_ENDPOINT_SOCKET=unix:///spiffe-workload-api/agent.sock
  -e "SPIKE_NEXUS_KEEPER_PEERS=https://127.0.0.1:$keeper_port"
  -e SPIKE_NEXUS_SHAMIR_SHARES=1 -e SPIKE_NEXUS_SHAMIR_THRESHOLD=1
  -e "SPIKE_NEXUS_API_URL=https://127.0.0.1:$nexus_port")
for c in keeper nexus bootstrap pilot; do
  img=$(case $c in pilot) echo spike ;; *) echo "spike-$c" ;; esac)
  "${B[@]}" from --name "$c" "localhost/spike-rs/$img:$TAG" > /dev/null
done
# Started directly (not through a function), so that $! is buildah, which stops the
# container's process when it is terminated.
"${B[@]}" run --isolation chroot --user 65533:65533 "${common[@]}" \
  -e "SPIKE_KEEPER_TLS_PORT=127.0.0.1:$keeper_port" keeper -- /keeper > "$work/keeper.log" 2>&1 &
pids+=($!)
"${B[@]}" run --isolation chroot "${common[@]}" -v "$work/data:/var/lib/spike" \
  -e SPIKE_NEXUS_BACKEND_STORE=sled -e SPIKE_NEXUS_DATA_DIR=/var/lib/spike/data \
  -e "SPIKE_NEXUS_TLS_PORT=127.0.0.1:$nexus_port" nexus -- /usr/local/bin/spike-nexus \
  > "$work/nexus.log" 2>&1 &
pids+=($!)

# SPIKE's charts run `/bootstrap -init`; so does this chart.
read -r -a bootstrap_args <<< "${SPIKE_SMOKE_BOOTSTRAP_ARGS--init}"
timeout 180 "${B[@]}" run --isolation chroot --user 65534:65534 "${common[@]}" bootstrap \
  -- /bootstrap "${bootstrap_args[@]}" > "$work/bootstrap.log" 2>&1 \
  || fail "bootstrap failed: $(tail -3 "$work/bootstrap.log")"
echo "bootstrap: $(grep -v '^\s*$' "$work/bootstrap.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')"

"${B[@]}" run --isolation chroot --user 65535:65535 "${common[@]}" pilot -- \
  /usr/local/bin/spike secret put smoke/db password=s3cret > "$work/pilot.log" 2>&1 \
  || fail "spike secret put failed: $(cat "$work/pilot.log")"
got=$("${B[@]}" run --isolation chroot --user 65535:65535 "${common[@]}" pilot -- \
  /usr/local/bin/spike secret get smoke/db password 2>> "$work/pilot.log")
[ "$got" = "s3cret" ] || fail "spike secret get returned '$got'"
echo "spike secret put/get through the images: ok"
[ -n "$(ls -A "$work/data/data")" ] || fail "Nexus wrote nothing to its data volume"
echo "images smoke test passed"
