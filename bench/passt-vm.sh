#!/usr/bin/env bash
# passt with a real guest: our passt over vhost-user and over the QEMU stream
# socket, and Debian's passt (stream socket; Debian 12's has no vhost-user),
# with the same tiny guest of tests/guest (QEMU, TCG on our machines, 1 vCPU,
# 512 MiB, one queue pair), one boot per tool and run.
#
# In each boot the guest runs, against servers on the host's loopback reached
# through the mapped gateway:
#   - tcpbench (tests/guest/examples/tcpbench.c, static): guest -> host and
#     host -> guest TCP throughput and 1-byte request/response, BENCH_PASST_SECONDS
#     each, measured by the host-side server on the host's clock;
#   - busybox nc: download and upload of BENCH_PASST_MIB MiB (socat on the host),
#     timed by the guest with /proc/uptime (0 skips them).
# Alternates the order of the tools from run to run (reversed every other run);
# medians of BENCH_RUNS runs. Prints a Markdown section on stdout, progress on
# stderr. Called by bench/run.sh; runnable alone. Needs root.
#
# Environment: BENCH_RUNS=3, BENCH_PASST_SECONDS=5, BENCH_PASST_MIB=200,
# BENCH_PASST_TOOLS="vu ours debian" (subset and order), BENCH_OURS_PASST
# (default target/release/passt), BENCH_SKIP_INSTALL (no apt-get for gcc),
# GUEST_WORKDIR (guest image cache).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
RUNS=${BENCH_RUNS:-3}
SECS=${BENCH_PASST_SECONDS:-5}
MIB=${BENCH_PASST_MIB:-200}
TOOLS=${BENCH_PASST_TOOLS:-"vu ours debian"}
OURS=${BENCH_OURS_PASST:-$ROOT/target/release/passt}
DEBIAN=/usr/bin/passt
RUN_GUEST=$ROOT/tests/guest/run-guest.sh
TCPBENCH_C=$ROOT/tests/guest/examples/tcpbench.c
case "$RUNS$MIB$SECS" in *[!0-9]*) echo "BENCH_RUNS, BENCH_PASST_MIB and BENCH_PASST_SECONDS are integers" >&2; exit 2 ;; esac
if [ "$SECS" -lt 1 ] || [ "$SECS" -gt 600 ] || [ "$RUNS" -lt 1 ] || [ "$RUNS" -gt 50 ]; then
	echo "BENCH_PASST_SECONDS 1..600, BENCH_RUNS 1..50" >&2
	exit 2
fi
for t in $TOOLS; do
	case "$t" in vu | ours | debian) ;; *) echo "passt-vm: unknown tool '$t' (vu ours debian)" >&2; exit 2 ;; esac
done
for f in "$OURS" "$DEBIAN" "$RUN_GUEST"; do
	[ -x "$f" ] || { echo "passt-vm: missing $f" >&2; exit 1; }
done
if ! command -v gcc >/dev/null || ! [ -e /usr/lib/x86_64-linux-gnu/libc.a ]; then
	[ -z "${BENCH_SKIP_INSTALL:-}" ] || { echo "passt-vm: need gcc and libc6-dev (static libc)" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null || exit 1
fi

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

# The guest-side tool, also the host-side servers.
TCPBENCH=$TMP/tcpbench
gcc -O2 -static -o "$TCPBENCH" "$TCPBENCH_C" || exit 1

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
# nc download source and upload sink, on the host's loopback (the guest's
# gateway address): each connection moves exactly $bytes.
if [ "$MIB" -gt 0 ]; then
	ip netns exec "$NS" timeout 7200 socat -U TCP-LISTEN:8001,reuseaddr,fork \
		SYSTEM:"head -c $bytes /dev/zero" 2>/dev/null &
	PIDS+=($!)
	ip netns exec "$NS" timeout 7200 socat -u TCP-LISTEN:8002,reuseaddr,fork \
		SYSTEM:"head -c $bytes >/dev/null" 2>/dev/null &
	PIDS+=($!)
fi

cat >"$TMP/guest.sh" <<'EOF'
/opt/tcpbench send $GW4 8003 $SECS
/opt/tcpbench recv $GW4 8004
/opt/tcpbench rr $GW4 8005 $SECS
[ "$BYTES" = 0 ] && exit 0
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

# The value of KEY=... on the TCPBENCH line of file $1, or "fail".
tb_field() {
	[ -f "$1" ] || { echo fail; return; }
	awk -v k="$2" '/^TCPBENCH / { for (i = 3; i <= NF; i++) if (index($i, k "=") == 1) v = substr($i, length(k) + 2) }
		END { if (v != "" && v + 0 > 0) printf "%.0f\n", v; else print "fail" }' "$1"
}

# One boot of the guest with TOOL's passt: prints
# "TX RX RR DL UL" (guest->host and host->guest Mbit/s, transactions/s, nc
# download and upload Mbit/s), "fail" for each that did not work.
measure() {
	local tool=$1 sock=$TMP/passt.sock log=$TMP/console.$1 bin=$OURS
	local -a popts=(-f -1 -s "$sock") gopts=(--socket "$sock")
	[ "$tool" = debian ] && bin=$DEBIAN
	if [ "$tool" = vu ]; then
		popts=(--vhost-user "${popts[@]}")
		gopts=(--vhost-user "$sock")
	fi
	rm -f "$sock" "$TMP"/tb.*
	ip netns exec "$NS" "$bin" "${popts[@]}" >"$TMP/passt.log.$tool" 2>&1 &
	local pid=$! srv=()
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
	# One connection each; bounded in case the guest never connects.
	local lim=$((3 * SECS + 600))
	ip netns exec "$NS" timeout "$lim" "$TCPBENCH" sink 8003 >"$TMP/tb.sink" 2>&1 &
	srv+=($!)
	ip netns exec "$NS" timeout "$lim" "$TCPBENCH" source 8004 "$SECS" >"$TMP/tb.source" 2>&1 &
	srv+=($!)
	ip netns exec "$NS" timeout "$lim" "$TCPBENCH" echo 8005 >"$TMP/tb.echo" 2>&1 &
	srv+=($!)
	if [ -S "$sock" ]; then
		"$RUN_GUEST" "${gopts[@]}" --mem 512 --script "$TMP/guest.sh" --add "$TCPBENCH" \
			--env "BYTES=$bytes" --env "SECS=$SECS" --timeout $((3 * SECS + 900)) >"$log" 2>&1
	else
		echo "passt-vm: $tool: no socket at $sock" >"$log"
	fi
	kill "$pid" "${srv[@]}" 2>/dev/null
	wait "$pid" "${srv[@]}" 2>/dev/null
	local tx rx rr
	tx=$(tb_field "$TMP/tb.sink" mbit)
	rx=$(tb_field "$TMP/tb.source" mbit)
	rr=$(tb_field "$TMP/tb.echo" rate)
	echo "$tx $rx $rr $(awk -v want="$bytes" '
		/^DL / { if ($2 == want) dl = $2 * 8 / ($4 - $3) / 1e6 }
		/^UL / { if ($2 == want) ul = $2 * 8 / ($4 - $3) / 1e6 }
		END {
			if (want == 0) { print "- -"; exit }
			printf "%s %s\n", dl ? sprintf("%.0f", dl) : "fail", ul ? sprintf("%.0f", ul) : "fail" }' "$log")"
}

read -ra tools <<<"$TOOLS"
for ((run = 1; run <= RUNS; run++)); do
	order=("${tools[@]}")
	if ((run % 2 == 0)); then
		order=()
		for ((i = ${#tools[@]} - 1; i >= 0; i--)); do order+=("${tools[i]}"); done
	fi
	for t in "${order[@]}"; do
		read -r tx rx rr dl ul < <(measure "$t")
		for k in tx rx rr dl ul; do echo "${!k}" >>"$TMP/$k.$t"; done
		printf '  passt run %d  %-6s g->h %6s Mbit/s  h->g %6s Mbit/s  rr %6s/s  nc download %6s Mbit/s  upload %6s Mbit/s\n' \
			"$run" "$t" "$tx" "$rx" "$rr" "$dl" "$ul" | tee -a "$TMP/runs.txt" >&2
		case "$tx $rx $rr" in
		*fail*) # keep the failing boot's tail for the report
			{
				echo "  ($t, run $run: last console lines)"
				grep -v '^guest: dmesg' "$TMP/console.$t" | tail -8 | sed 's/^/    /'
				echo "  ($t, run $run: passt log)"
				tail -5 "$TMP/passt.log.$t" | sed 's/^/    /'
			} >>"$TMP/runs.txt"
			;;
		esac
	done
done

median() {
	[ -f "$1" ] || { echo "—"; return; }
	awk '/^[0-9.]+$/ { v[n++] = $1; next } /^-$/ { skip = 1; next } { f++ }
	END {
		if (n == 0) { print (skip && !f) ? "—" : "fail"; exit }
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
# "met" / "not met" for ratio $1 against minimum $2.
verdict() {
	awk -v v="$1" -v min="$2" 'BEGIN { print (v ~ /^[0-9.]+$/ && v >= min) ? "met" : "not met" }'
}
deb_ver=$(dpkg-query -W -f='${Version}' passt 2>/dev/null)
accel=tcg
[ -w /dev/kvm ] && grep -qE 'vmx|svm' /proc/cpuinfo && accel=kvm
echo
echo "## passt: guest ↔ host, vhost-user and the QEMU stream socket"
echo
echo "A real guest (QEMU $accel, 1 vCPU, 512 MiB, virtio-net, one queue pair) with"
echo "our passt over vhost-user (\`-netdev vhost-user\`, memfd guest memory) and over"
echo "the stream socket (\`-netdev stream\`), and Debian's passt $deb_ver (stream"
echo "socket). TCP to the host's loopback through the mapped gateway: tcpbench"
echo "($SECS s each, measured on the host's clock), and busybox nc moving $MIB MiB"
echo "(timed in the guest). $RUNS run(s) per tool, one boot each, median, order"
echo "alternated. Under TCG the guest's CPU is the bottleneck: per-packet work in"
echo "the guest is what offloads save, and the ratios are what count."
echo
echo "| case | vhost-user (ours) | stream (ours) | stream (Debian) | vhost-user/stream | ours/Debian (stream) | target |"
echo "|---|---|---|---|---|---|---|"
row() { # label key min-vu/stream min-ours/debian
	local v o d rv ro tgt=""
	v=$(median "$TMP/$2.vu") o=$(median "$TMP/$2.ours") d=$(median "$TMP/$2.debian")
	rv=$(ratio "$v" "$o") ro=$(ratio "$o" "$d")
	[ -n "$3" ] && tgt="vhost-user ≥$3× stream: $(verdict "$rv" "$3")"
	[ -n "$4" ] && tgt="${tgt:+$tgt; }ours ≥$4× Debian: $(verdict "$ro" "$4")"
	echo "| $1 | $v | $o | $d | $rv | $ro | $tgt |"
}
row "guest → host, TCP (Mbit/s)" tx 3 ""
row "guest ← host, TCP (Mbit/s)" rx 3 ""
row "1-byte request/response (/s)" rr 1.2 ""
if [ "$MIB" -gt 0 ]; then
	row "guest ← host, nc $MIB MiB (Mbit/s)" dl "" 1.0
	row "guest → host, nc $MIB MiB (Mbit/s)" ul "" 1.0
fi
echo
echo '```'
cat "$TMP/runs.txt"
echo '```'
