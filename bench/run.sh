#!/usr/bin/env bash
# Side-by-side throughput and transaction-rate benchmark: our pasta against
# Debian's pasta and slirp4netns, with kernel-only baselines (veth, loopback),
# in one run, alternating the order of the tools from run to run.
# See bench/README.md. Needs root (namespaces): re-runs itself through sudo
# or su (scripts/as-root.sh).
#
# Environment:
#   BENCH_SECONDS=3   length of one measurement
#   BENCH_RUNS=3      runs per (case, tool); medians are reported
#   BENCH_TOOLS="ours debian slirp veth lo"
#   BENCH_CASES="in65520 out65520 in1500 out1500 rr crr spl_in spl_out"
#   BENCH_OUT=bench/RESULTS.md
#   BENCH_OURS=PATH      our pasta binary (default target/release/pasta)
#   BENCH_DEBIAN=PATH    the reference pasta (default /usr/bin/pasta); another
#                        build of ours here compares two versions side by side
#   BENCH_SKIP_BUILD=1   use the existing target/release binaries
#   BENCH_SKIP_INSTALL=1 do not call apt-get
#   BENCH_NO_PASST=1     skip the passt section (bench/passt-vm.sh: a real
#                        guest under QEMU, our passt over vhost-user and the
#                        stream socket against Debian's; BENCH_PASST_SECONDS,
#                        BENCH_PASST_MIB, BENCH_PASST_TOOLS tune it)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

. scripts/as-root.sh
AS_ROOT_KEEP="BENCH_SECONDS BENCH_RUNS BENCH_TOOLS BENCH_CASES BENCH_OUT BENCH_OURS BENCH_DEBIAN BENCH_SKIP_BUILD BENCH_SKIP_INSTALL BENCH_NO_PASST BENCH_PASST_SECONDS BENCH_PASST_MIB BENCH_PASST_TOOLS" \
	as_root "$ROOT/bench/run.sh" "$@"
trap give_back EXIT

SECS=${BENCH_SECONDS:-3}
RUNS=${BENCH_RUNS:-3}
TOOLS=${BENCH_TOOLS:-"ours debian slirp veth lo"}
CASES=${BENCH_CASES:-"in65520 out65520 in1500 out1500 rr crr spl_in spl_out"}
OUT=${BENCH_OUT:-bench/RESULTS.md}
OURS=${BENCH_OURS:-$ROOT/target/release/pasta}
TCP_RR=$ROOT/target/release/examples/tcp_rr
DEBIAN_PASTA=${BENCH_DEBIAN:-/usr/bin/pasta}

case "$SECS$RUNS" in *[!0-9]*) echo "BENCH_SECONDS and BENCH_RUNS are integers" >&2; exit 2 ;; esac
if [ "$SECS" -lt 1 ] || [ "$SECS" -gt 600 ] || [ "$RUNS" -lt 1 ] || [ "$RUNS" -gt 50 ]; then
	echo "BENCH_SECONDS 1..600, BENCH_RUNS 1..50" >&2
	exit 2
fi

# Bound of any one command that should finish within a measurement.
LIMIT=$((SECS + 20))

# ---------------------------------------------------------------- set-up --
if [ -z "${BENCH_SKIP_INSTALL:-}" ]; then
	missing=""
	for p in passt slirp4netns iperf3 jq socat iproute2 procps qemu-system-x86 cpio gcc libc6-dev; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "== installing:$missing"
		apt-get update -qq
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null || exit 1
	fi
fi
if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
	echo "== cargo build --release --bins --examples"
	PATH=$PATH:${HOME:-/root}/.cargo/bin cargo build --release --quiet --bins --examples || exit 1
fi
for f in "$TCP_RR" "$DEBIAN_PASTA" /usr/bin/slirp4netns /usr/bin/iperf3; do
	[ -x "$f" ] || { echo "missing $f" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/passt-rs-bench.XXXXXX)
P=pb$$ # namespace prefix: ${P}h host, ${P}r remote, ${P}g guest
H=${P}h R=${P}r G=${P}g
PIDS=()

# Host side: "the host" is namespace $H, so nothing touches the machine's
# own network. Its eth0 (veth) leads to $R, where "remote" clients live.
HOST_IP=198.51.100.1
REMOTE_IP=198.51.100.2
HOST_GW=198.51.100.254 # never reached: only gives the host a default route

teardown() {
	local pid ns n
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	# Give them 2 s to end cleanly, then kill whatever is left in our namespaces.
	for ((n = 0; n < 40; n++)); do
		for pid in "${PIDS[@]}"; do
			kill -0 "$pid" 2>/dev/null && break
			pid=""
		done
		[ -z "${pid:-}" ] && break
		sleep 0.05
	done
	for ns in "$G" "$R" "$H"; do
		[ -e "/run/netns/$ns" ] || continue
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -9 "$pid" 2>/dev/null
		done
	done
	for ns in "$G" "$R" "$H"; do
		[ -e "/run/netns/$ns" ] && ip netns del "$ns" 2>/dev/null
	done
	PIDS=()
}
# Start a background command, remembered for teardown. Disowned: the shell
# does not report it being killed (it still reaps it).
spawn() {
	"$@" &
	PIDS+=($!)
	disown $!
}
cleanup() {
	teardown
	rm -rf "$TMP"
	give_back
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

listening() { # NS PORT
	ip netns exec "$1" ss -Htln "sport = :$2" | grep -q .
}

# Fresh namespaces for one measurement. $1: veth MTU.
setup_ns() {
	local ns
	for ns in "$H" "$R" "$G"; do
		ip netns add "$ns" || return 1
		ip -n "$ns" link set lo up
	done
	# crr opens ~10^4 connections per second: more ephemeral ports, reuse of
	# TIME_WAIT ones, or a 3 s loopback run exhausts them.
	for ns in "$H" "$R" "$G"; do
		ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65000" \
			net.ipv4.tcp_tw_reuse=1
	done
	for ns in "$H" "$R"; do
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
			net.ipv6.conf.default.disable_ipv6=1
	done
	ip -n "$H" link add eth0 mtu "$1" type veth peer name eth0 netns "$R" mtu "$1" || return 1
	ip -n "$H" address add "$HOST_IP/24" dev eth0
	ip -n "$R" address add "$REMOTE_IP/24" dev eth0
	ip -n "$H" link set eth0 up
	ip -n "$R" link set eth0 up
	ip -n "$H" route add default via "$HOST_GW"
}

# Start translator $1 in the host namespace, attached to $G, tap MTU $2,
# TCP port 5201 forwarded to the guest. Sets GW (the guest's address for
# the host). Returns 1 if the guest does not get a default route.
start_translator() {
	local tool=$1 mtu=$2 bin
	case $tool in
	ours | debian)
		bin=$OURS
		[ "$tool" = debian ] && bin=$DEBIAN_PASTA
		spawn ip netns exec "$H" timeout $((LIMIT * 2)) "$bin" --runas 0 --config-net \
			--netns "/run/netns/$G" -f -q -m "$mtu" -t 5201 -T "${SPLICE_T:-none}" -u none -U none \
			>"$TMP/$tool.log" 2>&1
		GW=$HOST_GW # pasta maps the gateway address to the host's loopback
		;;
	slirp)
		rm -f "$TMP/slirp.sock"
		spawn ip netns exec "$H" timeout $((LIMIT * 2)) slirp4netns --configure --mtu="$mtu" \
			--api-socket "$TMP/slirp.sock" --netns-type=path "/run/netns/$G" tap0 \
			>"$TMP/$tool.log" 2>&1
		GW=10.0.2.2 # slirp4netns maps it to the host's loopback
		;;
	esac
	wait_for 100 sh -c "ip -n $G -4 route show default | grep -q ." || return 1
	if [ "$tool" = slirp ]; then
		wait_for 100 test -S "$TMP/slirp.sock" || return 1
		echo '{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "0.0.0.0", "host_port": 5201, "guest_port": 5201}}' |
			timeout 5 socat - "UNIX-CONNECT:$TMP/slirp.sock" | grep -q return || return 1
	fi
}

# What one (tool, case) measurement connects: sets SRV_NS CLI_NS ADDR PORT.
plan() {
	local tool=$1 case=$2
	case "$tool:$case" in
	lo:*) SRV_NS=$H CLI_NS=$H ADDR=127.0.0.1 ;;
	*:spl*) splice_plan "$case" ;;
	veth:out*) SRV_NS=$R CLI_NS=$H ADDR=$REMOTE_IP ;;
	veth:*) SRV_NS=$H CLI_NS=$R ADDR=$HOST_IP ;;
	*:in*) SRV_NS=$G CLI_NS=$R ADDR=$HOST_IP ;; # through the -t / hostfwd port
	*) SRV_NS=$H CLI_NS=$G ADDR=$GW ;;           # out, rr, crr: to the gateway
	esac
	case $case in
	in*) PORT=5201 ;;
	out*) PORT=5202 ;;
	spl*) ;; # splice_plan
	*) PORT=5300 ;;
	esac
}

# One measurement: sets VAL to a number (Gbit/s or transactions/s) or "fail".
# Runs in the main shell (not in $(...)) so that PIDS keeps what it starts.
# Extra information (retransmissions, errors) goes to $TMP/note.
measure() {
	local tool=$1 case=$2 mtu=65520 out=$TMP/client.out
	VAL=fail
	case $case in *1500) mtu=1500 ;; esac
	: >"$TMP/note"
	splice_translator "$case"
	teardown
	if [ "$tool" = veth ]; then setup_ns "$mtu"; else setup_ns 65520; fi || return
	GW=""
	case $tool in
	ours | debian | slirp)
		start_translator "$tool" "$mtu" || {
			echo "no guest route: $(tail -n1 "$TMP/$tool.log" 2>/dev/null)" >"$TMP/note"
			return
		}
		;;
	esac
	plan "$tool" "$case"
	case $case in
	rr | crr)
		spawn ip netns exec "$SRV_NS" timeout "$LIMIT" "$TCP_RR" server --port "$PORT" >/dev/null 2>&1
		;;
	*)
		spawn ip netns exec "$SRV_NS" timeout "$LIMIT" iperf3 -s -1 -p "$PORT" >/dev/null 2>&1
		;;
	esac
	wait_for 100 listening "$SRV_NS" "$PORT" || return
	# The forwarded port must be listened on by the translator.
	case $case in
	in*) [ "$tool" = veth ] || [ "$tool" = lo ] ||
		wait_for 60 listening "$H" 5201 || {
		echo "port 5201 not forwarded" >"$TMP/note"
		return
	} ;;
	esac
	case $case in
	rr | crr)
		ip netns exec "$CLI_NS" timeout "$LIMIT" "$TCP_RR" client --host "$ADDR" --port "$PORT" \
			--mode "$case" --size 1 --seconds "$SECS" >"$out" 2>&1
		local rc=$? line
		line=$(grep transactions_per_sec= "$out")
		sed -n 's/.*\(errors=[0-9]*\).*/\1/p' "$out" >"$TMP/note"
		if [ $rc = 0 ] && [ -n "$line" ]; then
			VAL=${line##*transactions_per_sec=}
			VAL=${VAL%% *}
		fi
		;;
	*)
		ip netns exec "$CLI_NS" timeout "$LIMIT" iperf3 -c "$ADDR" -p "$PORT" -t "$SECS" \
			--connect-timeout 3000 -J >"$out" 2>/dev/null
		local bps
		bps=$(jq -r '.end.sum_received.bits_per_second // empty' "$out" 2>/dev/null)
		jq -r 'if .error then .error else "retransmits=\(.end.sum_sent.retransmits // "?")" end' \
			"$out" >"$TMP/note" 2>/dev/null
		if [ -n "$bps" ] && [ "$(jq -r '.error // empty' "$out")" = "" ]; then
			VAL=$(awk -v b="$bps" 'BEGIN { printf "%.3f\n", b / 1e9 }')
		fi
		;;
	esac
}

applies() { # TOOL CASE: loopback has no MTU; measure it for the others only
	[ "$1" = lo ] && case $2 in *1500) return 1 ;; esac
	splice_applies "$1" "$2"
}

# ---------------------------------------------------------- splice cases --
# Loopback to loopback through pasta's splice path (no tap): spl_in is
# iperf3 from the host's 127.0.0.1 to a server in the guest through -t 5201,
# spl_out from the guest's 127.0.0.1 to a server on the host through
# -T 5203. Only for the two pastas; "lo" is the plain loopback reference.
splice_translator() { # CASE: the -T spec of the translator
	case $1 in
	spl_out) SPLICE_T=5203 ;;
	*) SPLICE_T=none ;;
	esac
}
splice_plan() { # CASE: sets SRV_NS CLI_NS ADDR PORT
	case $1 in
	spl_in) SRV_NS=$G CLI_NS=$H ADDR=127.0.0.1 PORT=5201 ;;
	spl_out) SRV_NS=$H CLI_NS=$G ADDR=127.0.0.1 PORT=5203 ;;
	esac
}
splice_applies() { # TOOL CASE
	case "$1:$2" in slirp:spl* | veth:spl*) return 1 ;; esac
	return 0
}
splice_target() { # OURS/DEBIAN OURS/LOOPBACK
	awk -v d="$1" -v l="$2" 'BEGIN {
		g = "≥0.85× loopback, ≥1.1× Debian"
		if (d !~ /^[0-9.]+$/ || l !~ /^[0-9.]+$/) { print g ": —"; exit }
		print g ": " (l + 0 >= 0.85 && d + 0 >= 1.1 ? "met" : "not met") }'
}

# --------------------------------------------------------------- measure --
mkdir -p "$TMP/res"
read -ra tools <<<"$TOOLS"
read -ra cases <<<"$CASES"
echo "== $RUNS run(s) x ${SECS}s, tools: ${tools[*]}, cases: ${cases[*]}"
for ((run = 1; run <= RUNS; run++)); do
	order=("${tools[@]}")
	if ((run % 2 == 0)); then # alternate the order to cancel drift
		order=()
		for ((i = ${#tools[@]} - 1; i >= 0; i--)); do order+=("${tools[i]}"); done
	fi
	for c in "${cases[@]}"; do
		for t in "${order[@]}"; do
			applies "$t" "$c" || continue
			measure "$t" "$c"
			v=$VAL
			note=$(cat "$TMP/note" 2>/dev/null)
			echo "$v" >>"$TMP/res/$c.$t"
			printf '  run %d  %-9s %-7s %10s  %s\n' "$run" "$c" "$t" "$v" "$note" |
				tee -a "$TMP/runs.txt"
		done
	done
done
teardown

# ------------------------------------------------------------------ UDP --
# UDP through the tap path, ours and Debian's pasta side by side (see
# bench/README.md): iperf3 -u at unlimited rate with 1400- and 32000-byte
# datagrams, namespace→host (guest to the gateway, i.e. the host's loopback)
# and host→namespace (remote namespace to the host's address, port 5201
# forwarded with -t and -u), received rate and loss; and udp_rr, 1-byte
# request/response from the guest to the host through the gateway.
UDP_TOOLS=${BENCH_UDP_TOOLS:-"ours debian"}
UDP_CASES=${BENCH_UDP_CASES:-"udp_out1400 udp_in1400 udp_out32000 udp_in32000 udp_rr"}
UDP_RR=$ROOT/target/release/examples/udp_rr

udp_listening() { # NS PORT
	ip netns exec "$1" ss -Huln "sport = :$2" | grep -q .
}

# One UDP measurement: sets VAL (Gbit/s received, or transactions/s).
udp_measure() {
	local tool=$1 case=$2 out=$TMP/client.out bin srv cli addr port len
	VAL=fail
	: >"$TMP/note"
	teardown
	setup_ns 65520 || return
	bin=$OURS
	[ "$tool" = debian ] && bin=$DEBIAN_PASTA
	spawn ip netns exec "$H" timeout $((LIMIT * 2)) "$bin" --runas 0 --config-net \
		--netns "/run/netns/$G" -f -q -t 5201 -u 5201 -T none -U none >"$TMP/$tool.log" 2>&1
	wait_for 100 sh -c "ip -n $G -4 route show default | grep -q ." || {
		echo "no guest route: $(tail -n1 "$TMP/$tool.log" 2>/dev/null)" >"$TMP/note"
		return
	}
	case $case in
	udp_in*) srv=$G cli=$R addr=$HOST_IP port=5201 ;;
	udp_rr) srv=$H cli=$G addr=$HOST_GW port=5300 ;;
	*) srv=$H cli=$G addr=$HOST_GW port=5202 ;;
	esac
	len=${case##*[a-z]}
	if [ "$case" = udp_rr ]; then
		spawn ip netns exec "$srv" timeout "$LIMIT" "$UDP_RR" server --port "$port" \
			--seconds "$SECS" >/dev/null 2>&1
		wait_for 100 udp_listening "$srv" "$port" || return
		ip netns exec "$cli" timeout "$LIMIT" "$UDP_RR" client --host "$addr" --port "$port" \
			--seconds "$SECS" >"$out" 2>&1
		local rc=$? line
		line=$(grep transactions_per_sec= "$out")
		sed -n 's/.*\(errors=[0-9]*\).*/\1/p' "$out" >"$TMP/note"
		if [ $rc = 0 ] && [ -n "$line" ]; then
			VAL=${line##*transactions_per_sec=}
			VAL=${VAL%% *}
		fi
		return
	fi
	spawn ip netns exec "$srv" timeout "$LIMIT" iperf3 -s -1 -p "$port" >/dev/null 2>&1
	wait_for 100 listening "$srv" "$port" || return
	case $case in
	udp_in*) wait_for 60 listening "$H" 5201 || {
		echo "port 5201 not forwarded" >"$TMP/note"
		return
	} ;;
	esac
	ip netns exec "$cli" timeout "$LIMIT" iperf3 -c "$addr" -p "$port" -u -b 0 -l "$len" \
		-t "$SECS" --connect-timeout 3000 -J >"$out" 2>/dev/null
	local bps
	bps=$(jq -r '.end.sum_received.bits_per_second // empty' "$out" 2>/dev/null)
	jq -r 'if .error then .error else "loss=\(.end.sum_received.lost_percent // "?" | tostring | .[0:5])% sent=\((.end.sum.bits_per_second // 0) / 1e9 | tostring | .[0:5])Gbit/s" end' \
		"$out" >"$TMP/note" 2>/dev/null
	if [ -n "$bps" ] && [ "$(jq -r '.error // empty' "$out")" = "" ]; then
		VAL=$(awk -v b="$bps" 'BEGIN { printf "%.3f\n", b / 1e9 }')
	fi
}

read -ra udp_tools <<<"$UDP_TOOLS"
read -ra udp_cases <<<"$UDP_CASES"
if [ ${#udp_cases[@]} -gt 0 ]; then
	[ -x "$UDP_RR" ] || { echo "missing $UDP_RR" >&2; exit 1; }
	echo "== UDP: $RUNS run(s) x ${SECS}s, tools: ${udp_tools[*]}, cases: ${udp_cases[*]}"
fi
for ((run = 1; run <= RUNS; run++)); do
	order=("${udp_tools[@]}")
	if ((run % 2 == 0)); then
		order=()
		for ((i = ${#udp_tools[@]} - 1; i >= 0; i--)); do order+=("${udp_tools[i]}"); done
	fi
	for c in "${udp_cases[@]}"; do
		for t in "${order[@]}"; do
			udp_measure "$t" "$c"
			v=$VAL
			note=$(cat "$TMP/note" 2>/dev/null)
			echo "$v" >>"$TMP/res/$c.$t"
			printf '  run %d  %-12s %-7s %10s  %s\n' "$run" "$c" "$t" "$v" "$note" |
				tee -a "$TMP/runs.txt"
		done
	done
done
teardown

# The UDP table of the report (after the TCP one).
udp_report() {
	[ ${#udp_cases[@]} -gt 0 ] || return 0
	local c o d rd goal
	echo
	echo "## UDP (tap path)"
	echo
	echo "| case | ours | Debian pasta | ours/Debian | target |"
	echo "|---|---|---|---|---|"
	for c in "${udp_cases[@]}"; do
		o=$(median "$TMP/res/$c.ours") d=$(median "$TMP/res/$c.debian")
		rd=$(ratio "$o" "$d")
		case $c in
		udp_*1400) goal=$(awk -v v="$rd" 'BEGIN {
			if (v !~ /^[0-9.]+$/) { print "≥1.2× Debian: —"; exit }
			print "≥1.2× Debian: " (v + 0 >= 1.2 ? "met" : "not met") }') ;;
		*) goal="—" ;;
		esac
		case $c in
		udp_out*) desc="UDP namespace→host, ${c##*[a-z]}-byte datagrams, received (Gbit/s)" ;;
		udp_in*) desc="UDP host→namespace, ${c##*[a-z]}-byte datagrams, received (Gbit/s)" ;;
		udp_rr) desc="UDP request/response, 1 byte (per s)" ;;
		*) desc=$c ;;
		esac
		echo "| $desc | $o | $d | $rd | $goal |"
	done
}

# ---------------------------------------------------------------- report --
# median FILE: median of the numeric lines, "fail" if none, " (k fail)" appended.
median() {
	[ -f "$1" ] || { echo "—"; return; }
	awk '/^[0-9.]+$/ { v[n++] = $1; next } { f++ }
	END {
		if (n == 0) { print "fail"; exit }
		for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
		m = (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
		printf (m >= 1000 ? "%.0f" : "%.2f"), m
		if (f) printf " (%d fail)", f
		print ""
	}' "$1"
}
ratio() { # A B
	awk -v a="${1%% *}" -v b="${2%% *}" 'BEGIN {
		if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b == 0) { print "—"; exit }
		printf "%.2f\n", a / b }'
}
target() { # CASE OURS/DEBIAN OURS/LOOPBACK -> "goal: met?"
	local want val goal
	case $1 in
	in65520) want=1.3 val=$2 goal="≥1.3× Debian" ;;
	out65520) want=0.6 val=$3 goal="≥0.6× loopback" ;;
	in1500 | out1500) want=1.5 val=$2 goal="≥1.5× Debian" ;;
	rr | crr) want=1.0 val=$2 goal="≥1.0× Debian" ;;
	spl*) splice_target "$2" "$3"; return ;;
	*) echo "—"; return ;;
	esac
	awk -v v="$val" -v w="$want" -v g="$goal" 'BEGIN {
		if (v !~ /^[0-9.]+$/) { print g ": —"; exit }
		print g ": " (v + 0 >= w + 0 ? "met" : "not met") }'
}
describe() {
	case $1 in
	in65520) echo "TCP host→namespace, tap MTU 65520 (Gbit/s)" ;;
	out65520) echo "TCP namespace→host, tap MTU 65520 (Gbit/s)" ;;
	in1500) echo "TCP host→namespace, tap MTU 1500 (Gbit/s)" ;;
	out1500) echo "TCP namespace→host, tap MTU 1500 (Gbit/s)" ;;
	rr) echo "TCP request/response, 1 byte (per s)" ;;
	crr) echo "TCP connect+request+response+close (per s)" ;;
	spl_in) echo "TCP splice, host 127.0.0.1 → namespace via -t (Gbit/s)" ;;
	spl_out) echo "TCP splice, namespace 127.0.0.1 → host via -T (Gbit/s)" ;;
	*) echo "$1" ;;
	esac
}

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
deb_ver=$(dpkg-query -W -f='${Version}' passt 2>/dev/null)
slirp_ver=$(slirp4netns --version 2>/dev/null | head -n1)
ours_ver=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo "-dirty")
{
	echo "# passt-rs benchmark results"
	echo
	echo "Generated by \`bench/run.sh\` (see [README](README.md)) on $(date -u '+%Y-%m-%d %H:%M UTC')."
	echo
	echo "- machine: kernel $(uname -r), $(nproc) CPU(s), ${cpu:-unknown CPU}"
	echo "- ours: passt-rs $ours_ver; Debian pasta: passt $deb_ver; $slirp_ver; $(iperf3 --version | head -n1)"
	echo "- $RUNS run(s) × ${SECS} s per cell, median; order of tools alternated between runs"
	echo
	echo "| case | ours | Debian pasta | slirp4netns | veth | loopback | ours/Debian | ours/loopback | target |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for c in "${cases[@]}"; do
		o=$(median "$TMP/res/$c.ours") d=$(median "$TMP/res/$c.debian")
		s=$(median "$TMP/res/$c.slirp") v=$(median "$TMP/res/$c.veth")
		l=$(median "$TMP/res/$c.lo")
		# 1500-byte cases have no loopback cell: compare to the 65520 one.
		lref=$l
		[ "$l" = "—" ] && lref=$(median "$TMP/res/${c%1500}65520.lo")
		rd=$(ratio "$o" "$d") rl=$(ratio "$o" "$lref")
		echo "| $(describe "$c") | $o | $d | $s | $v | $l | $rd | $rl | $(target "$c" "$rd" "$rl") |"
	done
	echo
	echo "\"fail\": the case did not work for that tool (for ours, typically a feature"
	echo "not implemented yet). Differences under ~20 % are noise on shared machines."
	echo
	echo "## Every run"
	echo
	echo "In measurement order (a collapse shows as one low run with many retransmissions)."
	echo
	echo '```'
	cat "$TMP/runs.txt"
	echo '```'
} >"$TMP/report.md"
udp_report >>"$TMP/report.md"
# passt (vhost-user and QEMU socket mode) with a real guest: its own section.
if [ -z "${BENCH_NO_PASST:-}" ]; then
	echo "== passt: guest <-> host over vhost-user and the QEMU socket (bench/passt-vm.sh)"
	BENCH_RUNS=$RUNS "$ROOT/bench/passt-vm.sh" >>"$TMP/report.md" ||
		printf '\n## passt: guest ↔ host\n\nbench/passt-vm.sh failed.\n' >>"$TMP/report.md"
fi
mkdir -p "$(dirname "$OUT")"
cp "$TMP/report.md" "$OUT"
echo
cat "$OUT"
echo
echo "== written to $OUT"
