#!/usr/bin/env bash
# passt (QEMU socket mode) throughput, guest <-> host: our passt against
# Debian's, with the tiny guest of tests/guest (QEMU, TCG on our machines).
# The guest downloads N MiB from a host-side server through the mapped
# gateway (busybox nc reading from socat) and uploads N MiB to it; the
# guest times each transfer with /proc/uptime. Alternates the order of the
# tools from run to run; prints a Markdown section on stdout, progress on
# stderr. Called by bench/run.sh; runnable alone. Needs root.
#
# Environment: BENCH_RUNS=3, BENCH_PASST_MIB=200, BENCH_OURS_PASST (default
# target/release/passt), GUEST_WORKDIR (guest image cache).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
RUNS=${BENCH_RUNS:-3}
MIB=${BENCH_PASST_MIB:-200}
OURS=${BENCH_OURS_PASST:-$ROOT/target/release/passt}
DEBIAN=/usr/bin/passt
RUN_GUEST=$ROOT/tests/guest/run-guest.sh
case "$RUNS$MIB" in *[!0-9]*) echo "BENCH_RUNS and BENCH_PASST_MIB are integers" >&2; exit 2 ;; esac
for f in "$OURS" "$DEBIAN" "$RUN_GUEST"; do
	[ -x "$f" ] || { echo "passt-vm: missing $f" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/passt-rs-vmbench.XXXXXX)
chmod 1777 "$TMP" # Debian's passt binds its socket after becoming nobody
NS=pvb$$
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

# The host: a namespace with a veth (its peer unused) holding the host's
# address and a default route, so that both passt versions find a template.
ip netns add "$NS" || exit 1
ip -n "$NS" link set lo up
ip -n "$NS" link add eth0 type veth peer name peer0
ip -n "$NS" link set eth0 up
ip -n "$NS" link set peer0 up
ip -n "$NS" addr add 192.0.2.2/24 dev eth0
ip -n "$NS" route add default via 192.0.2.1
ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
bytes=$((MIB * 1048576))
# Download source and upload sink, on the host's loopback (the guest's
# gateway address): each connection moves exactly $bytes.
ip netns exec "$NS" timeout 3600 socat -U TCP-LISTEN:8001,reuseaddr,fork \
	SYSTEM:"head -c $bytes /dev/zero" 2>/dev/null &
PIDS+=($!)
ip netns exec "$NS" timeout 3600 socat -u TCP-LISTEN:8002,reuseaddr,fork \
	SYSTEM:"head -c $bytes >/dev/null" 2>/dev/null &
PIDS+=($!)

cat >"$TMP/guest.sh" <<'EOF'
up() { cut -d' ' -f1 /proc/uptime; }
t0=$(up)
n=$(timeout 600 nc $GW4 8001 | wc -c)
t1=$(up)
echo "DL $n $t0 $t1"
t0=$(up)
timeout 600 sh -c "head -c $BYTES /dev/zero | nc $GW4 8002"
t1=$(up)
echo "UL $BYTES $t0 $t1"
EOF

# One boot with TOOL's passt: prints "DL_MBPS UL_MBPS" or "fail fail".
measure() {
	local bin=$1 sock=$TMP/passt.sock log=$TMP/console
	rm -f "$sock"
	ip netns exec "$NS" "$bin" -f -1 -s "$sock" >"$TMP/passt.log" 2>&1 &
	local pid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
	"$RUN_GUEST" --socket "$sock" --script "$TMP/guest.sh" --env "BYTES=$bytes" \
		--timeout 900 >"$log" 2>&1
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	awk -v want="$bytes" '
		/^DL / { if ($2 == want) dl = $2 * 8 / ($4 - $3) / 1e6 }
		/^UL / { if ($2 == want) ul = $2 * 8 / ($4 - $3) / 1e6 }
		END { printf "%s %s\n", dl ? sprintf("%.0f", dl) : "fail", ul ? sprintf("%.0f", ul) : "fail" }' "$log"
}

tools=(ours debian)
for ((run = 1; run <= RUNS; run++)); do
	order=("${tools[@]}")
	((run % 2 == 0)) && order=(debian ours)
	for t in "${order[@]}"; do
		bin=$OURS
		[ "$t" = debian ] && bin=$DEBIAN
		read -r dl ul < <(measure "$bin")
		echo "$dl" >>"$TMP/dl.$t"
		echo "$ul" >>"$TMP/ul.$t"
		printf '  passt run %d  %-7s download %6s Mbit/s  upload %6s Mbit/s\n' "$run" "$t" "$dl" "$ul" |
			tee -a "$TMP/runs.txt" >&2
	done
done

median() {
	awk '/^[0-9.]+$/ { v[n++] = $1; next } { f++ }
	END {
		if (n == 0) { print "fail"; exit }
		for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
		m = (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
		printf "%.0f", m
		if (f) printf " (%d fail)", f
		print ""
	}' "$1"
}
ratio() {
	awk -v a="${1%% *}" -v b="${2%% *}" 'BEGIN {
		if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b == 0) { print "—"; exit }
		printf "%.2f\n", a / b }'
}
deb_ver=$(dpkg-query -W -f='${Version}' passt 2>/dev/null)
accel=tcg
[ -w /dev/kvm ] && grep -qE 'vmx|svm' /proc/cpuinfo && accel=kvm
dlo=$(median "$TMP/dl.ours") dld=$(median "$TMP/dl.debian")
ulo=$(median "$TMP/ul.ours") uld=$(median "$TMP/ul.debian")
echo
echo "## passt: guest ↔ host through the QEMU socket"
echo
echo "A real guest (QEMU $accel, virtio-net, \`-netdev stream\`) moves $MIB MiB"
echo "through passt to the host's loopback (busybox nc ↔ socat), timed in the"
echo "guest; $RUNS run(s) per tool, median, order alternated. Debian: passt $deb_ver."
echo "Under TCG the guest's CPU is the bottleneck: the ratio is what counts."
echo
echo "| case | ours | Debian passt | ours/Debian | target |"
echo "|---|---|---|---|---|"
r=$(ratio "$dlo" "$dld")
echo "| guest ← host, TCP (Mbit/s) | $dlo | $dld | $r | ≥1.0× Debian: $(awk -v v="$r" 'BEGIN { print (v ~ /^[0-9.]+$/ && v >= 1.0) ? "met" : "not met" }') |"
r=$(ratio "$ulo" "$uld")
echo "| guest → host, TCP (Mbit/s) | $ulo | $uld | $r | ≥1.0× Debian: $(awk -v v="$r" 'BEGIN { print (v ~ /^[0-9.]+$/ && v >= 1.0) ? "met" : "not met" }') |"
echo
echo '```'
cat "$TMP/runs.txt"
echo '```'
