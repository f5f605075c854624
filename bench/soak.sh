#!/usr/bin/env bash
# Soak benchmark: bounded memory over time. Mixed traffic through our pasta
# and our passt at once for SOAK_SECONDS, sampling each translator's RSS
# (VmRSS) and open descriptors (/proc/PID/fd) every second; after the
# warm-up neither may grow. See bench/README.md ("Soak"). Needs root
# (namespaces): re-runs itself through sudo or su (scripts/as-root.sh).
#
# The guests are namespaces: pasta's is attached with --netns, passt's
# gets a tap that tests/tap_relay.py connects to passt's stream socket,
# so both guests are the host's real kernel. Each guest runs
# `tests/alloc_load.py soak`: bulk TCP each way, short connections, a UDP
# stream and DNS queries (tests/dns_server.py on the host's loopback,
# reached through the gateway address).
#
# Rule, per translator and per quantity (RSS, descriptors): the samples
# after the warm-up are cut in two halves; the largest of the second half
# may exceed the largest of the first by at most the slack. The load must
# also run to the end without an error (a stalled translator does not grow).
#
# Environment:
#   SOAK_SECONDS=600       length of the run (at least 20)
#   SOAK_WARMUP=60         seconds not judged (default SOAK_SECONDS/5, 10..60)
#   SOAK_MODES="pasta passt"
#   SOAK_OUT=bench/SOAK.md summary (the per-second samples go next to it,
#                          same name, .csv)
#   SOAK_RSS_SLACK_KB=1024
#   SOAK_FD_SLACK=8
#   SOAK_PASTA=PATH SOAK_PASST=PATH   binaries (default target/release/*)
#   SOAK_SKIP_BUILD=1      use the existing binaries
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

. scripts/as-root.sh
AS_ROOT_KEEP="SOAK_SECONDS SOAK_WARMUP SOAK_MODES SOAK_OUT SOAK_RSS_SLACK_KB SOAK_FD_SLACK SOAK_PASTA SOAK_PASST SOAK_SKIP_BUILD" \
	as_root "$ROOT/bench/soak.sh" "$@"
trap give_back EXIT

SECS=${SOAK_SECONDS:-600}
WARM_DEFAULT=$((SECS / 5))
[ "$WARM_DEFAULT" -lt 10 ] && WARM_DEFAULT=10
[ "$WARM_DEFAULT" -gt 60 ] && WARM_DEFAULT=60
WARM=${SOAK_WARMUP:-$WARM_DEFAULT}
MODES=${SOAK_MODES:-"pasta passt"}
OUT=${SOAK_OUT:-bench/SOAK.md}
CSV=${OUT%.*}.csv
RSS_SLACK=${SOAK_RSS_SLACK_KB:-1024}
FD_SLACK=${SOAK_FD_SLACK:-8}
PASTA=${SOAK_PASTA:-$ROOT/target/release/pasta}
PASST=${SOAK_PASST:-$ROOT/target/release/passt}

case "$SECS$WARM$RSS_SLACK$FD_SLACK" in *[!0-9]*)
	echo "SOAK_SECONDS, SOAK_WARMUP and the slacks are integers" >&2
	exit 2
	;;
esac
if [ "$SECS" -lt 20 ] || [ "$SECS" -gt 86400 ] || [ $((WARM + 10)) -gt "$SECS" ]; then
	echo "SOAK_SECONDS 20..86400, and at least 10 s after SOAK_WARMUP" >&2
	exit 2
fi
for m in $MODES; do
	case $m in pasta | passt) ;; *)
		echo "SOAK_MODES: pasta and/or passt" >&2
		exit 2
		;;
	esac
done

if [ -z "${SOAK_SKIP_BUILD:-}" ]; then
	echo "== cargo build --release --bins"
	PATH=$PATH:${HOME:-/root}/.cargo/bin cargo build --release --quiet --bins || exit 1
fi
for f in "$PASTA" "$PASST"; do
	[ -x "$f" ] || { echo "missing $f" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/passt-rs-soak.XXXXXX)
P=ps$$ # namespaces: ${P}h host, ${P}r remote, ${P}a pasta's guest, ${P}s passt's
H=${P}h R=${P}r GA=${P}a GS=${P}s
PIDS=()
HOST4=192.0.2.2 REMOTE4=192.0.2.1 BEYOND4=198.51.100.1 PORT=47100

teardown() {
	local pid ns
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for ns in "$GA" "$GS" "$R" "$H"; do
		[ -e "/run/netns/$ns" ] || continue
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -9 "$pid" 2>/dev/null
		done
		ip netns del "$ns" 2>/dev/null
	done
	PIDS=()
}
cleanup() {
	teardown
	rm -rf "$TMP"
	give_back
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Start a background command, remembered for teardown.
spawn() {
	"$@" &
	PIDS+=($!)
	disown $!
}

# Bounded wait: wait_for TRIES(×0.05 s) COMMAND...
wait_for() {
	local n=$1
	shift
	while [ "$n" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
		n=$((n - 1))
	done
	return 1
}

fail() {
	local f
	echo "soak: $*" >&2
	for f in "$TMP"/*.log "$TMP"/*.out "$TMP"/*.err; do
		[ -s "$f" ] && { echo "--- $f" >&2; tail -5 "$f" >&2; }
	done
	exit 1
}

# ---------------------------------------------------------------- set-up --
# remote ($R) eth0 192.0.2.1, lo 198.51.100.1 <─veth─> host ($H) eth0
# 192.0.2.2, default via 192.0.2.1; the translators run in $H.
for ns in "$H" "$R" "$GA" "$GS"; do
	ip netns add "$ns" || fail "ip netns add $ns"
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1 net.ipv4.tcp_tw_reuse=1 \
		net.ipv4.ip_local_port_range="1024 65000"
done
ip -n "$H" link add eth0 type veth peer name eth0 netns "$R" || fail "veth"
ip -n "$H" address add "$HOST4/24" dev eth0
ip -n "$R" address add "$REMOTE4/24" dev eth0
ip -n "$R" address add "$BEYOND4/32" dev lo
ip -n "$H" link set eth0 up
ip -n "$R" link set eth0 up
ip -n "$H" route add default via "$REMOTE4"

LIFE=$((SECS + 120)) # bound of every background process
spawn ip netns exec "$R" timeout "$LIFE" python3 tests/alloc_load.py server "$PORT" "$BEYOND4" "$LIFE" \
	>"$TMP/server.out" 2>&1
# DNS on the host's loopback: the guests query the gateway address, which
# both translators map to the host.
spawn ip netns exec "$H" timeout "$LIFE" python3 tests/dns_server.py --bind 127.0.0.1 \
	--ready "$TMP/dns.ready" >/dev/null 2>"$TMP/dns.err"
wait_for 200 grep -q ready "$TMP/server.out" || fail "load server did not start"
wait_for 200 test -e "$TMP/dns.ready" || fail "DNS server did not start"

declare -A PID GUEST
for m in $MODES; do
	case $m in
	pasta)
		spawn ip netns exec "$H" "$PASTA" --runas 0 --config-net --netns "/run/netns/$GA" -f -q -4 \
			-t none -u none -T none -U none >"$TMP/pasta.log" 2>&1
		PID[pasta]=${PIDS[-1]}
		GUEST[pasta]=$GA
		wait_for 200 sh -c "ip -n $GA route show default | grep -q ." ||
			fail "pasta: no default route in its guest"
		;;
	passt)
		spawn ip netns exec "$H" "$PASST" -f -q -s "$TMP/passt.sock" >"$TMP/passt.log" 2>&1
		PID[passt]=${PIDS[-1]}
		GUEST[passt]=$GS
		spawn ip netns exec "$GS" timeout "$LIFE" python3 tests/tap_relay.py "$TMP/passt.sock" tap0 \
			>"$TMP/relay.out" 2>&1
		wait_for 200 grep -q ready "$TMP/relay.out" || fail "tap_relay.py did not connect to passt"
		ip -n "$GS" link set tap0 mtu 65520 up
		ip -n "$GS" address add "$HOST4/24" dev tap0
		ip -n "$GS" route add default via "$REMOTE4"
		;;
	esac
done

# ------------------------------------------------------------------ load --
echo "== soak: $SECS s of mixed traffic through: $MODES (warm-up $WARM s)"
LOADS=()
for m in $MODES; do
	ip netns exec "${GUEST[$m]}" timeout $((SECS + 60)) python3 tests/alloc_load.py soak \
		"$BEYOND4" "$PORT" "$REMOTE4" "$SECS" >"$TMP/load-$m.out" 2>&1 &
	LOADS+=($!)
done

echo "mode,second,rss_kib,fds" >"$TMP/samples.csv"
start=$(date +%s)
for ((t = 1; t <= SECS; t++)); do
	# Sample at start + t, whatever the time the sampling itself took.
	now=$(date +%s)
	[ "$now" -lt $((start + t)) ] && sleep $((start + t - now))
	for m in $MODES; do
		rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/${PID[$m]}/status" 2>/dev/null)
		fds=$(ls "/proc/${PID[$m]}/fd" 2>/dev/null | wc -l)
		[ -n "$rss" ] || { rss=dead fds=dead; }
		echo "$m,$t,$rss,$fds" >>"$TMP/samples.csv"
	done
	if [ $((t % 60)) = 0 ]; then
		echo "  $t s: $(grep ",$t," "$TMP/samples.csv" | tr '\n' ' ')"
	fi
done
for p in "${LOADS[@]}"; do
	wait "$p"
done
cp "$TMP/samples.csv" "$CSV"

# ----------------------------------------------------------------- judge --
MID=$((WARM + (SECS - WARM) / 2))
ok=1
rows=""
for m in $MODES; do
	traffic=$(grep -m1 '^up=' "$TMP/load-$m.out")
	grep -qx done "$TMP/load-$m.out" || traffic="FAILED: $(tail -3 "$TMP/load-$m.out" | tr '\n' ' ')"
	# first sample, max to the end of the warm-up, max of each half after it
	read -r r0 rw r1 r2 f0 fw f1 f2 dead < <(awk -F, -v m="$m" -v w="$WARM" -v mid="$MID" '
		$1 == m {
			if ($3 == "dead") { dead = 1; next }
			if (!seen) { r0 = $3; f0 = $4; seen = 1 }
			if ($2 <= w) { if ($3 > rw) rw = $3; if ($4 > fw) fw = $4 }
			else if ($2 <= mid) { if ($3 > r1) r1 = $3; if ($4 > f1) f1 = $4 }
			else { if ($3 > r2) r2 = $3; if ($4 > f2) f2 = $4 }
		}
		END { print r0+0, rw+0, r1+0, r2+0, f0+0, fw+0, f1+0, f2+0, dead+0 }' "$TMP/samples.csv")
	verdict=pass
	[ "$dead" = 1 ] && verdict="FAIL (exited)"
	[ "$r2" -gt $((r1 + RSS_SLACK)) ] && verdict="FAIL (RSS grew)"
	[ "$f2" -gt $((f1 + FD_SLACK)) ] && verdict="FAIL (descriptors grew)"
	case $traffic in FAILED* | "") verdict="FAIL (load)" ;; esac
	[ "$verdict" = pass ] || ok=0
	rows+="| $m | $r0 | $rw | $r1 | $r2 | $f0 | $fw | $f1 | $f2 | $traffic | $verdict |"$'\n'
done

{
	echo "# Soak: RSS and descriptors over time"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r), $(nproc) CPUs," \
		"$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)."
	echo "Run: \`SOAK_SECONDS=$SECS bench/soak.sh\` ($SECS s, warm-up $WARM s, both halves" \
		"after it: $((WARM + 1))..$MID s and $((MID + 1))..$SECS s)."
	echo "Rule: max of the 2nd half ≤ max of the 1st half + $RSS_SLACK KiB (RSS)," \
		"+ $FD_SLACK (descriptors); the load runs to the end without an error."
	echo
	echo "| translator | RSS KiB at 1 s | RSS max warm-up | RSS max 1st half | RSS max 2nd half | fds at 1 s | fds max warm-up | fds max 1st half | fds max 2nd half | traffic (bytes up/down, short connections, UDP datagrams, DNS answers) | verdict |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	printf '%s' "$rows"
} >"$OUT"
echo
cat "$OUT"
echo
echo "(summary in $OUT, samples in $CSV)"
[ "$ok" = 1 ]
