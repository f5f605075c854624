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
	curl jq iperf3 procps util-linux kmod python3 bind9-dnsutils qemu-system-x86 cpio
	nftables gcc libc6-dev ethtool"
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
echo "== rust-version"
# rust-version must stay true, and rustup cannot fetch an older toolchain to
# prove it: no dependency that passt and pasta build with (normal and build
# dependencies, for this host) may declare a newer rust-version than ours.
# clippy's incompatible_msrv (Cargo.toml) does the same for our own code.
too_new=$(cargo metadata --format-version 1 \
	--filter-platform "$(rustc -vV | sed -n 's/^host: //p')" | jq -r '
	def ver: split(".") | map(tonumber) | (. + [0, 0])[:3];
	(.packages | map({key: .id, value: .}) | from_entries) as $pkg
	| (.resolve.nodes | map({key: .id, value: [.deps[]
		| select(any(.dep_kinds[]; .kind != "dev")) | .pkg]}) | from_entries) as $deps
	| def closure: . as $set | ($set + [$set[] | $deps[.][]] | unique) as $next
		| if ($next | length) == ($set | length) then $set else $next | closure end;
	$pkg[.resolve.root] as $root
	| ($root.rust_version // error("no rust-version in Cargo.toml") | ver) as $ours
	| $deps[$root.id] | unique | closure[] | $pkg[.]
	| select(.rust_version != null and (.rust_version | ver) > $ours)
	| "\(.name) \(.version) needs Rust \(.rust_version), more than rust-version \($root.rust_version)"')
if [ -n "$too_new" ]; then
	echo "$too_new" >&2
	exit 1
fi
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
# The TCP tests again without SO_PEEK_OFF (kernels before 6.9, Debian 12's
# own 6.1 among them): each peek then starts at the first unacknowledged
# byte and skips what the guest already has.
if [ $# -eq 0 ]; then
	echo "== cargo test, TCP without SO_PEEK_OFF"
	PASST_RS_TEST_NO_PEEK_OFF=1 cargo test --release --quiet --no-fail-fast \
		--test tcp --test tcp_offload --test tso_retransmit -- \
		--test-threads="${TEST_THREADS:-4}" 2>&1 | tee -a "$log"
	[ "${PIPESTATUS[0]}" = 0 ] || rc=1
fi
set -e
# One closing line for the whole run (--no-fail-fast: a failing test file
# does not hide the results of the files after it).
awk '/^test result:/ { p += $4; f += $6 } END { printf "passt-rs: %d passed, %d failed\n", p, f }' "$log"
# Every fuzz target for a bounded time on its committed corpus (installs
# the nightly toolchain and cargo-fuzz if missing; fails on a crash).
echo "== fuzz"
scripts/fuzz.sh "${FUZZ_SECONDS:-30}" || rc=1
exit "$rc"
