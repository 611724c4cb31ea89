#!/usr/bin/env bash
# Make sure the Debian packages the test suite needs are installed: a Docker engine binary
# (dockerd) and a static busybox (the suite starts its own private dockerd and builds a
# busybox image offline, no registry pulls), and Chromium with its driver (browser tests run
# Debian's chromium headless through Selenium, which then downloads no browser of its own),
# and fuse3 (a FUSE file system that stops answering stands in for a dead NFS server), and
# gdu (the parallel disk-usage tool bench/scan.py races; its smoke run is in the suite).
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

have_chromium() {
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]
}

have_fuse3() {
    # libfuse3 for the hung-filesystem tests' FUSE file system (mfusepy loads it).
    command -v fusermount3 >/dev/null 2>&1 && ldconfig -p | grep -q libfuse3.so.3
}

missing=()
have_dockerd || missing+=(docker.io)
have_static_busybox || missing+=(busybox-static)
have_chromium || missing+=(chromium chromium-driver)
have_fuse3 || missing+=(fuse3)
command -v gdu >/dev/null 2>&1 || missing+=(gdu)

[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    cat >&2 <<MSG
error: the test suite needs these Debian packages, which are not installed:
    ${missing[*]}
  (dockerd from docker.io, a static /bin/busybox from busybox-static,
   /usr/bin/chromium and /usr/bin/chromedriver from chromium and chromium-driver).
Install them as root, e.g.:
    sudo apt-get update && sudo apt-get install -y ${missing[*]}
MSG
    exit 1
fi

echo "ensure-test-packages: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# apt-get update is retried once: a mirror that is mid-sync fails it now and then.
apt-get update -qq || apt-get update -qq
# docker.io pulls in containerd and runc; busybox-static replaces a dynamic busybox.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

if ! have_dockerd || ! have_static_busybox || ! have_chromium; then
    echo "ensure-test-packages: installed, but dockerd, static busybox or chromium still missing" >&2
    exit 1
fi
