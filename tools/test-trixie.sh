#!/usr/bin/env bash
# make test-trixie: the README's `make test` (or any make target: TARGET=demo) on Debian 13 (trixie: QGIS 3.40 LTR,
# Python 3.13, numpy 2, GDAL 3.10), in a Debian 13 root file system built with debootstrap from the Debian archive
# apt already uses here. The root is built once and kept outside the checkout ($TRIXIE_ROOT, default
# /var/cache/seamless-inference/trixie), so a second run reuses it and the Debian packages `make test` installed in it.
# A fresh clone of this checkout's HEAD (committed work only, as CI sees it) runs inside, with ../shared beside it
# as on the host. Needs root (chroot and mounts) or sudo.
#
#   tools/test-trixie.sh [TARGET]      TARGET: test (default), demo, ...
#   TRIXIE_REBUILD=1 tools/test-trixie.sh    rebuild the root from nothing
#   PYTEST_ARGS="tests/test_qgis_process.py" tools/test-trixie.sh    some tests only
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${1:-test}
root=${TRIXIE_ROOT:-/var/cache/seamless-inference/trixie}
if [ "$(id -u)" != 0 ]; then exec sudo --preserve-env=TRIXIE_ROOT,TRIXIE_REBUILD,PYTEST_ARGS "$0" "$@"; fi
export DEBIAN_FRONTEND=noninteractive

# the Debian mirror apt already uses here (deb822 or one-line sources), else Debian's own
mirror=$(grep -hsE '^(URIs:|deb) ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
         | grep -oE 'https?://[^ ]+/debian/?' | head -1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
security=${mirror%/debian*}/debian-security

build_root() {
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap >/dev/null; }
  rm -rf "$root" "$root.partial"
  mkdir -p "$(dirname "$root")"
  echo "test-trixie: building a Debian 13 root in $root from $mirror (once, about 1 min)"
  debootstrap --variant=minbase --include=ca-certificates,git,make,python3,locales \
    trixie "$root.partial" "$mirror" > "$root.partial.log" 2>&1 \
    || { tail -20 "$root.partial.log"; echo "test-trixie: debootstrap failed (log above)"; exit 1; }
  cat > "$root.partial/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -f "$root.partial/etc/apt/sources.list"
  rm -f "$root.partial.log"
  mv "$root.partial" "$root"
}

[ -n "${TRIXIE_REBUILD:-}" ] && rm -rf "$root"
[ -x "$root/usr/bin/make" ] || build_root

# what the host trusts (pip reaches PyPI through it here), how it resolves names
mkdir -p "$root/usr/local/share/ca-certificates"
cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
cp -L /etc/resolv.conf "$root/etc/resolv.conf"

mounts=()
bind() {  # bind SRC DEST [ro]
  mkdir -p "$2"; mount --bind "$1" "$2"; mounts=("$2" "${mounts[@]}")
  [ "${3:-}" = ro ] && mount -o remount,bind,ro "$2"
  return 0
}
cleanup() { for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
mount -t proc proc "$root/proc"; mounts=("$root/proc")
bind /sys "$root/sys" ro
bind /dev "$root/dev"
bind /dev/pts "$root/dev/pts"
mkdir -p "$root/dev/shm"; mount -t tmpfs -o mode=1777 shm "$root/dev/shm"; mounts=("$root/dev/shm" "${mounts[@]}")
bind "$here" "$root/mnt/checkout" ro
[ -d "$here/../shared" ] && bind "$here/../shared" "$root/work/shared" ro

# a clean environment, as on a fresh machine: no venv, no host Python or pip settings
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb \
    CI="${CI:-}" TARGET="$target" PYTEST_ARGS="${PYTEST_ARGS:-}" chroot "$root" /bin/bash -euo pipefail -c '
  update-ca-certificates >/dev/null 2>&1
  git config --global --add safe.directory "*"
  rm -rf /work/main && git clone -q /mnt/checkout /work/main
  cd /work/main
  echo "test-trixie: $(. /etc/os-release; echo "$PRETTY_NAME"), clone of $(git log -1 --format="%h %s" | cut -c1-80)"
  make "$TARGET"
'
