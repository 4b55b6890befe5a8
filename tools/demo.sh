#!/usr/bin/env bash
# The ctlfs demo: mounts ctlfs with its embedded Kafka broker on a temporary
# directory, starts the reference agent for runtime rt1 / resource svc, and
# pauses and resumes svc through the filesystem, showing each command as you
# would type it. Cleans up after itself, also on failure or Ctrl-C.
#   tools/demo.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
cd "$ROOT"

"$ROOT/tools/install-deps.sh"
if [[ ! -f build/build.ninja ]]; then
  meson setup build >/dev/null
fi
ninja -C build >/dev/null

CTLFS=$ROOT/build/tools/ctlfs
AGENT=$ROOT/build/tools/ctlfs-agent
TMP=$(mktemp -d /tmp/ctlfs-demo.XXXXXX)
MNT=$TMP/mnt
mkdir "$MNT"
DAEMON_PID='' AGENT_PID=''

cleanup() {
  local rc=$?
  set +e
  cd /
  [[ -n $AGENT_PID ]] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  if is_mounted; then
    fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"
  fi
  if [[ -n $DAEMON_PID ]]; then
    for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$DAEMON_PID" 2>/dev/null
    wait "$DAEMON_PID" 2>/dev/null
  fi
  if ((rc != 0)); then
    echo "demo failed (exit $rc); stderr of ctlfs and the agent:" >&2
    cat "$TMP/ctlfs.err" >&2 2>/dev/null
    cat "$TMP/agent.err" >&2 2>/dev/null
  fi
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (bounded, SECONDS) until the command succeeds.
wait_for() {
  local secs=$1; shift
  local n=$((secs * 10))
  until "$@"; do
    ((n-- > 0)) || { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 0.1
  done
}
is_mounted() { grep -qs " $MNT " /proc/self/mountinfo; }

# Shows a command the way a user types it, then runs it.
run() {
  if [[ -t 1 ]]; then printf "\n\033[1m$ %s\033[0m\n" "$*"; else printf "\n$ %s\n" "$*"; fi
  eval "$*"
}

echo "== starting ctlfs with its embedded broker on $MNT"
"$CTLFS" -f --db="$TMP/ctlfs.db" "$MNT" >"$TMP/ctlfs.out" 2>"$TMP/ctlfs.err" &
DAEMON_PID=$!
wait_for 20 grep -q '^bootstrap=' "$TMP/ctlfs.out"
BOOTSTRAP=$(sed -n 's/^bootstrap=//p' "$TMP/ctlfs.out" | head -n 1)
wait_for 20 is_mounted
echo "   broker: $BOOTSTRAP"

cd "$MNT"
run ls
run cat status
run mkdir runtimes/rt1
run mkdir runtimes/rt1/svc

echo
echo "== starting the reference agent for runtime rt1, resource svc"
"$AGENT" --brokers="$BOOTSTRAP" --runtime=rt1 --resource=svc \
  >"$TMP/agent.out" 2>"$TMP/agent.err" &
AGENT_PID=$!
wait_for 20 grep -qx ready "$TMP/agent.out"

run cd runtimes/rt1/svc
run ls
wait_for 15 grep -qx running observed
run cat observed

for verb in pause resume; do
  want=paused; [[ $verb == resume ]] && want=running
  run "echo $verb > state"
  run cat state
  echo "   (waiting until the agent reports $want)"
  wait_for 15 grep -qx "$want" observed
  run cat observed
  run cat status
  run cat log
done

run cat ../status
run tail -n 3 ../../../log
echo
echo "== done; cleaning up"
