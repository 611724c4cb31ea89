#!/usr/bin/env bash
# Make sure a Docker engine binary (dockerd) and a static busybox are installed.
# The test suite starts its own private dockerd and builds a busybox image offline
# (no registry pulls), so these two packages are all it needs from the system.
# Idempotent and silent when everything is already present.
set -euo pipefail

have_dockerd() {
    command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || [ -x /usr/bin/dockerd ]
}

is_static() {
    # `ldd` (libc-bin, always present on Debian) reports static executables.
    local out
    [ -x "$1" ] || return 1
    out="$(LC_ALL=C ldd "$1" 2>&1 || true)"
    case "$out" in
        *"not a dynamic executable"* | *"statically linked"*) return 0 ;;
        *) return 1 ;;
    esac
}

have_static_busybox() {
    is_static /bin/busybox || is_static /usr/bin/busybox
}

missing=()
have_dockerd || missing+=(docker.io)
have_static_busybox || missing+=(busybox-static)

[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    cat >&2 <<MSG
error: the test suite needs these Debian packages, which are not installed:
    ${missing[*]}
  (dockerd from docker.io, a static /bin/busybox from busybox-static).
Install them as root, e.g.:
    sudo apt-get update && sudo apt-get install -y ${missing[*]}
MSG
    exit 1
fi

echo "ensure-docker: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# docker.io pulls in containerd and runc; busybox-static replaces a dynamic busybox.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

if ! have_dockerd || ! have_static_busybox; then
    echo "ensure-docker: installation finished but dockerd or static busybox still missing" >&2
    exit 1
fi
