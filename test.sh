#!/usr/bin/env bash
# Runs every test of passt-rs on a Debian 12 machine, installing first what
# the tests need. Needs root (network namespaces, tap devices, apt-get): as
# another user it re-runs itself through sudo, or su where there is no sudo
# (scripts/as-root.sh). Tests run against release binaries: the
# integration tests move gigabytes through pasta.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/as-root.sh
AS_ROOT_KEEP=TEST_THREADS as_root "$PWD/test.sh" "$@"
trap give_back EXIT

# Tools the integration tests drive: real clients, no mocks.
APT_PACKAGES="iproute2 iputils-ping busybox-static isc-dhcp-client ndisc6 socat
	curl jq iperf3 procps util-linux kmod python3 bind9-dnsutils qemu-system-x86 cpio"
missing=""
for p in $APT_PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "== installing:$missing"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo build"
cargo build --release --all-targets --quiet
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"; give_back' EXIT
set +e
cargo test --release --quiet --no-fail-fast --lib --bins --tests -- --test-threads="${TEST_THREADS:-4}" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (--no-fail-fast: a failing test file
# does not hide the results of the files after it).
awk '/^test result:/ { p += $4; f += $6 } END { printf "passt-rs: %d passed, %d failed\n", p, f }' "$log"
exit "$rc"
