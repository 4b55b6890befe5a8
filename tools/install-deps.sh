#!/usr/bin/env bash
# Installs the Debian packages that building ctlfs, its demo and its tests
# need, and only those that are missing. Debian 12 (bookworm).
#   tools/install-deps.sh            install what is missing
#   tools/install-deps.sh --check    list what is missing, exit 1 if anything is
set -euo pipefail

PACKAGES=(
  # build
  gcc libc6-dev meson ninja-build pkg-config
  libfuse3-dev librdkafka-dev libsqlite3-dev libjansson-dev libglib2.0-dev
  # sd_notify for the Type=notify unit (optional for the build)
  libsystemd-dev
  # run: fusermount3, mount.fuse3
  fuse3
  # install tests: systemd-analyze verify on the units, man --warnings on the pages
  systemd man-db
  # demo and tests
  kcat inotify-tools python3 python3-pytest python3-prometheus-client util-linux coreutils sqlite3 passwd
  # tests/mount/test_replace.py: the tools that write by rename (sed -i is coreutils' sed)
  sed ansible-core
  # watchers a user runs (tests/mount/test_watchers.py): entr; inotifywait and
  # GNU tail come above, node below
  entr
  # fuzzing (tests/fuzz): clang, its libFuzzer and sanitizer runtimes (not
  # pulled in by clang without recommends), llvm-symbolizer for stack traces
  clang libclang-rt-dev llvm
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

# The kafkajs runtime of tests/mount/test_interop.py and fs.watch/fs.watchFile
# in tests/mount/test_watchers.py: node and npm, found on
# PATH rather than by package, since a NodeSource nodejs (which bundles npm)
# must not get Debian's npm installed over it.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)

if [[ ${1:-} == --check ]]; then
  ((${#missing[@]} == 0)) && exit 0
  echo "missing: ${missing[*]}"
  exit 1
fi

((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null; then
  SUDO=(sudo)
else
  echo "install-deps: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "${SUDO[@]}" apt-get update -qq >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-deps: apt-get update failed" >&2
  exit 1
fi
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-deps: apt-get install failed" >&2
  exit 1
fi
echo "install-deps: done"
