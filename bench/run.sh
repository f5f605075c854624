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
#   BENCH_UDP_TOOLS="ours debian slirp lo"
#   BENCH_UDP_CASES="udp_out1400 udp_in1400 udp_out32000 udp_in32000 udp_rr"
#   BENCH_SYSCALL_CASES="rr crr"  syscalls per transaction (perf, strace); " ": none
#   BENCH_IDLE_CONNS=10000        idle-instance section; 0: skip it
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
AS_ROOT_KEEP="BENCH_SECONDS BENCH_RUNS BENCH_TOOLS BENCH_CASES BENCH_UDP_TOOLS BENCH_UDP_CASES BENCH_SYSCALL_CASES BENCH_IDLE_CONNS BENCH_OUT BENCH_OURS BENCH_DEBIAN BENCH_SKIP_BUILD BENCH_SKIP_INSTALL BENCH_NO_PASST BENCH_PASST_SECONDS BENCH_PASST_MIB BENCH_PASST_TOOLS" \
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
	for p in passt slirp4netns iperf3 jq socat iproute2 procps util-linux linux-perf strace python3 \
		qemu-system-x86 cpio gcc libc6-dev; do
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
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)

# Request/response cases pin the client to CPU 0 and the server to CPU 1
# (the translator is not pinned): on a 2-CPU VM, unpinned loopback
# ping-pong is bimodal (both on one CPU, or a cross-CPU wake-up per
# message), and so is every other tool's. One CPU: no pinning.
PIN_CLI=() PIN_SRV=()
if [ "$(nproc)" -ge 2 ]; then
	PIN_CLI=(taskset -c 0) PIN_SRV=(taskset -c 1)
fi
CLK_TCK=$(getconf CLK_TCK)

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
# TCP port 5201 forwarded to the guest (and UDP port $UDP_FWD if set).
# Sets GW (the guest's address for the host) and TPID (the translator's
# process). Returns 1 if the guest does not get a default route.
start_translator() {
	local tool=$1 mtu=$2 bin
	TPID=""
	case $tool in
	ours | debian)
		bin=$OURS
		[ "$tool" = debian ] && bin=$DEBIAN_PASTA
		spawn ip netns exec "$H" timeout $((LIMIT * 2)) "$bin" --runas 0 --config-net \
			--netns "/run/netns/$G" -f -q -m "$mtu" -t 5201 -T "${SPLICE_T:-none}" \
			-u "${UDP_FWD:-none}" -U none >"$TMP/$tool.log" 2>&1
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
	translator_pid "${PIDS[-1]}"
	wait_for 100 sh -c "ip -n $G -4 route show default | grep -q ." || return 1
	if [ "$tool" = slirp ]; then
		wait_for 100 test -S "$TMP/slirp.sock" || return 1
		slirp_fwd tcp 5201 || return 1
		if [ -n "${UDP_FWD:-}" ]; then slirp_fwd udp "$UDP_FWD" || return 1; fi
	fi
}
slirp_fwd() { # PROTO PORT: forward the host's PORT to the guest's through the API
	echo "{\"execute\": \"add_hostfwd\", \"arguments\": {\"proto\": \"$1\", \"host_addr\": \"0.0.0.0\", \"host_port\": $2, \"guest_port\": $2}}" |
		timeout 5 socat - "UNIX-CONNECT:$TMP/slirp.sock" | grep -q return
}

# ------------------------------------------- the translator's CPU and RSS --
# translator_pid PID: sets TPID to the translator under PID, the process
# that spawn started: `ip netns exec` execs timeout(1), whose child is the
# translator (both pastas run with -f, in the foreground; slirp4netns's
# main loop is that process too: the helper it forks to open the tap in
# the namespace is one level further down, and exits).
translator_pid() {
	local n
	TPID=""
	for ((n = 0; n < 100; n++)); do
		TPID=$(pgrep -P "$1" | head -n1)
		[ -n "$TPID" ] && return 0
		sleep 0.02
	done
	return 1
}
# cpu_ticks PID: user + system time so far, in clock ticks (fields 14 and
# 15 of /proc/PID/stat; the command name, field 2, is cut first as it may
# hold spaces). Empty if the process is gone.
cpu_ticks() {
	[ -n "$1" ] || return 0
	sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}
# status_kib PID FIELD: a kB field of /proc/PID/status (VmHWM, VmRSS).
status_kib() {
	[ -n "$1" ] || return 0
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null
}
# cost_record CASE TOOL T0 AMOUNT KIND: the translator's CPU since T0
# ticks per amount of work, appended to $TMP/res/CASE.TOOL.cpu: seconds per
# GB if KIND is bytes, µs per transaction if KIND is transactions; and its
# peak RSS (VmHWM, KiB) to CASE.TOOL.rss. Also to $TMP/note. No translator
# (veth, lo), or no work done: nothing.
cost_record() {
	local c=$1 t=$2 t0=$3 amount=$4 kind=$5 t1 hwm v
	[ -n "$TPID" ] && [ -n "$t0" ] || return 0
	t1=$(cpu_ticks "$TPID") hwm=$(status_kib "$TPID" VmHWM)
	[ -n "$t1" ] || return 0
	if [ -n "$amount" ] && [ "$amount" != 0 ]; then
		v=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v a="$amount" -v k="$kind" 'BEGIN {
			s = d / hz
			if (k == "bytes") printf "%.3f\n", s / (a / 1e9); else printf "%.2f\n", s * 1e6 / a }')
		echo "$v" >>"$TMP/res/$c.$t.cpu"
		if [ "$kind" = bytes ]; then printf ' cpu=%ss/GB' "$v"; else printf ' cpu=%sus/tr' "$v"; fi >>"$TMP/note"
	fi
	[ -n "$hwm" ] && echo "$hwm" >>"$TMP/res/$c.$t.rss" && printf ' hwm=%sKiB' "$hwm" >>"$TMP/note"
	return 0
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
	GW="" TPID=""
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
		spawn ip netns exec "$SRV_NS" timeout "$LIMIT" "${PIN_SRV[@]}" "$TCP_RR" server \
			--port "$PORT" >/dev/null 2>&1
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
	local t0
	t0=$(cpu_ticks "$TPID")
	case $case in
	rr | crr)
		ip netns exec "$CLI_NS" timeout "$LIMIT" "${PIN_CLI[@]}" "$TCP_RR" client --host "$ADDR" \
			--port "$PORT" --mode "$case" --size 1 --seconds "$SECS" >"$out" 2>&1
		local rc=$? line
		line=$(grep transactions_per_sec= "$out")
		sed -n 's/.*\(errors=[0-9]*\).*/\1/p' "$out" | tr -d '\n' >"$TMP/note"
		if [ $rc = 0 ] && [ -n "$line" ]; then
			VAL=${line##*transactions_per_sec=}
			VAL=${VAL%% *}
			cost_record "$case" "$tool" "$t0" "$(transactions "$out")" transactions
		fi
		;;
	*)
		ip netns exec "$CLI_NS" timeout "$LIMIT" iperf3 -c "$ADDR" -p "$PORT" -t "$SECS" \
			--connect-timeout 3000 -J >"$out" 2>/dev/null
		local bps
		bps=$(jq -r '.end.sum_received.bits_per_second // empty' "$out" 2>/dev/null)
		jq -j 'if .error then .error else "retransmits=\(.end.sum_sent.retransmits // "?")" end' \
			"$out" >"$TMP/note" 2>/dev/null
		if [ -n "$bps" ] && [ "$(jq -r '.error // empty' "$out")" = "" ]; then
			VAL=$(awk -v b="$bps" 'BEGIN { printf "%.3f\n", b / 1e9 }')
			cost_record "$case" "$tool" "$t0" "$(received_bytes "$out")" bytes
		fi
		;;
	esac
}
transactions() { # tcp_rr/udp_rr output: the transactions it counted
	sed -n 's/.* transactions=\([0-9]*\).*/\1/p' "$1"
}
received_bytes() { # iperf3 -J output: bytes the server received
	jq -r '.end.sum_received.bytes // empty | floor' "$1" 2>/dev/null
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
# UDP through the tap path, ours and Debian's pasta and slirp4netns side by
# side, loopback as the reference (see bench/README.md): iperf3 -u at
# unlimited rate with 1400- and 32000-byte datagrams, namespace→host (guest
# to the gateway, i.e. the host's loopback) and host→namespace (remote
# namespace to the host's address, port 5201 forwarded: -t and -u, or
# slirp4netns's add_hostfwd for tcp and udp), received rate and loss; and
# udp_rr, 1-byte request/response from the guest to the host through the
# gateway, client and server pinned like rr.
UDP_TOOLS=${BENCH_UDP_TOOLS:-"ours debian slirp lo"}
UDP_CASES=${BENCH_UDP_CASES:-"udp_out1400 udp_in1400 udp_out32000 udp_in32000 udp_rr"}
UDP_RR=$ROOT/target/release/examples/udp_rr

udp_listening() { # NS PORT
	ip netns exec "$1" ss -Huln "sport = :$2" | grep -q .
}
udp_applies() { # TOOL CASE: loopback has no direction, only the "out" cases
	case "$1:$2" in lo:udp_in*) return 1 ;; esac
	return 0
}

# One UDP measurement: sets VAL (Gbit/s received, or transactions/s).
udp_measure() {
	local tool=$1 case=$2 out=$TMP/client.out srv cli addr port len t0
	VAL=fail
	: >"$TMP/note"
	teardown
	setup_ns 65520 || return
	GW="" TPID=""
	if [ "$tool" != lo ]; then
		UDP_FWD=5201 start_translator "$tool" 65520 || {
			echo "no guest route: $(tail -n1 "$TMP/$tool.log" 2>/dev/null)" >"$TMP/note"
			return
		}
	fi
	case $tool:$case in
	lo:udp_rr) srv=$H cli=$H addr=127.0.0.1 port=5300 ;;
	lo:*) srv=$H cli=$H addr=127.0.0.1 port=5202 ;;
	*:udp_in*) srv=$G cli=$R addr=$HOST_IP port=5201 ;;
	*:udp_rr) srv=$H cli=$G addr=$GW port=5300 ;;
	*) srv=$H cli=$G addr=$GW port=5202 ;;
	esac
	len=${case##*[a-z]}
	if [ "$case" = udp_rr ]; then
		spawn ip netns exec "$srv" timeout "$LIMIT" "${PIN_SRV[@]}" "$UDP_RR" server \
			--port "$port" --seconds "$SECS" >/dev/null 2>&1
		wait_for 100 udp_listening "$srv" "$port" || return
		t0=$(cpu_ticks "$TPID")
		ip netns exec "$cli" timeout "$LIMIT" "${PIN_CLI[@]}" "$UDP_RR" client --host "$addr" \
			--port "$port" --seconds "$SECS" >"$out" 2>&1
		local rc=$? line
		line=$(grep transactions_per_sec= "$out")
		sed -n 's/.*\(errors=[0-9]*\).*/\1/p' "$out" | tr -d '\n' >"$TMP/note"
		if [ $rc = 0 ] && [ -n "$line" ]; then
			VAL=${line##*transactions_per_sec=}
			VAL=${VAL%% *}
			cost_record "$case" "$tool" "$t0" "$(transactions "$out")" transactions
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
	t0=$(cpu_ticks "$TPID")
	ip netns exec "$cli" timeout "$LIMIT" iperf3 -c "$addr" -p "$port" -u -b 0 -l "$len" \
		-t "$SECS" --connect-timeout 3000 -J >"$out" 2>/dev/null
	local bps
	bps=$(jq -r '.end.sum_received.bits_per_second // empty' "$out" 2>/dev/null)
	jq -j 'if .error then .error else "loss=\(.end.sum_received.lost_percent // "?" | tostring | .[0:5])% sent=\((.end.sum.bits_per_second // 0) / 1e9 | tostring | .[0:5])Gbit/s" end' \
		"$out" >"$TMP/note" 2>/dev/null
	if [ -n "$bps" ] && [ "$(jq -r '.error // empty' "$out")" = "" ]; then
		VAL=$(awk -v b="$bps" 'BEGIN { printf "%.3f\n", b / 1e9 }')
		cost_record "$case" "$tool" "$t0" "$(received_bytes "$out")" bytes
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
			udp_applies "$t" "$c" || continue
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

# ------------------------------------------------- syscalls per transaction --
# For rr and crr, ours and Debian's pasta, outside the timed runs: one
# measurement under `perf stat` (system calls entered and context switches
# of the translator, counted exactly over the client's run: perf attaches
# to the translator, then starts the client), one under `strace -c -f`
# (which syscalls; strace slows the translator down, so its counts serve
# only the breakdown). Both divided by the transactions the client counted
# in the same window.
SYSCALL_CASES=${BENCH_SYSCALL_CASES:-"rr crr"}
SYSCALL_TOOLS="ours debian"
# Counted by name: what either pasta calls in rr and crr (strace's table
# shows any other).
SYSCALL_NAMES="epoll_wait epoll_pwait epoll_ctl read readv write writev recvfrom recvmsg recvmmsg
	sendto sendmsg sendmmsg getsockopt setsockopt socket connect accept4 close timerfd_settime
	splice fcntl ioctl shutdown"
read -ra sys_cases <<<"$SYSCALL_CASES"

# syscall_setup TOOL CASE: translator, pinned tcp_rr server. Sets TPID.
syscall_setup() {
	teardown
	setup_ns 65520 || return 1
	GW="" TPID=""
	start_translator "$1" 65520 || return 1
	[ -n "$TPID" ] || return 1
	plan "$1" "$2"
	spawn ip netns exec "$SRV_NS" timeout "$LIMIT" "${PIN_SRV[@]}" "$TCP_RR" server \
		--port "$PORT" >/dev/null 2>&1
	wait_for 100 listening "$SRV_NS" "$PORT"
}
# syscall_perf EVENTS CASE SECONDS DIR: perf stat counts EVENTS of the
# translator over one pinned client run (perf attaches, then starts the
# client, and stops when it exits): DIR/perf.raw, DIR/client.out.
syscall_perf() {
	timeout "$LIMIT" perf stat -x, -o "$4/perf.raw" -e "${1%,}" -p "$TPID" -- \
		ip netns exec "$CLI_NS" timeout "$LIMIT" "${PIN_CLI[@]}" "$TCP_RR" client \
		--host "$ADDR" --port "$PORT" --mode "$2" --size 1 --seconds "$3" >"$4/client.out" 2>/dev/null
}
syscall_client() { # CASE SECONDS OUT: the pinned tcp_rr client, as in measure
	ip netns exec "$CLI_NS" timeout "$LIMIT" "${PIN_CLI[@]}" "$TCP_RR" client --host "$ADDR" \
		--port "$PORT" --mode "$1" --size 1 --seconds "$2" >"$3" 2>&1
}
# syscall_measure TOOL CASE: $TMP/sys/CASE.TOOL.perf ("syscalls=N
# cswitch=N transactions=N") and CASE.TOOL.strace (strace -c's table and
# a last line "transactions=N").
syscall_measure() {
	local t=$1 c=$2 d=$TMP/sys spid n
	mkdir -p "$d"
	if syscall_setup "$t" "$c"; then
		syscall_perf raw_syscalls:sys_enter,context-switches "$c" "$SECS" "$d"
		awk -F, -v tr="$(transactions "$d/client.out")" '
			$3 == "raw_syscalls:sys_enter" { sc = $1 } $3 == "context-switches" { cs = $1 }
			END { if (sc != "" && tr != "") print "syscalls=" sc, "cswitch=" cs, "transactions=" tr }' \
			"$d/perf.raw" >"$d/$c.$t.perf"
	fi
	# By name, in a run of its own: every counter perf attaches costs at
	# each of the translator's context switches, and a few dozen of them
	# slow it down. "NAME CALLS" lines, "all CALLS", then "transactions=N".
	if syscall_setup "$t" "$c"; then
		# shellcheck disable=SC2086 # a list of words
		syscall_perf "raw_syscalls:sys_enter,$(printf 'syscalls:sys_enter_%s,' $SYSCALL_NAMES)" \
			"$c" $((SECS < 2 ? SECS : 2)) "$d"
		{
			awk -F, '$1 ~ /^[0-9]+$/ && $1 > 0 && $3 ~ /^syscalls:sys_enter_/ {
				sub(/^syscalls:sys_enter_/, "", $3); print $3, $1 }
				$3 == "raw_syscalls:sys_enter" { print "all", $1 }' "$d/perf.raw"
			echo "transactions=$(transactions "$d/client.out")"
		} >"$d/$c.$t.perf.calls"
	fi
	if syscall_setup "$t" "$c"; then
		timeout -s INT $((LIMIT)) strace -c -f -p "$TPID" -o "$d/strace.raw" 2>/dev/null &
		spid=$!
		# Attached when the translator's TracerPid is strace's.
		for ((n = 0; n < 100; n++)); do
			[ "$(awk '/^TracerPid:/ { print $2 }' "/proc/$TPID/status" 2>/dev/null)" = "$spid" ] && break
			sleep 0.02
		done
		syscall_client "$c" $((SECS < 2 ? SECS : 2)) "$d/client.out"
		kill -INT "$spid" 2>/dev/null
		wait "$spid"
		# strace -c's rows: % time, seconds, usecs/call, calls, [errors,] name.
		{
			awk '$1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" { print $NF, $4 }' "$d/strace.raw"
			echo "transactions=$(transactions "$d/client.out")"
		} >"$d/$c.$t.strace.calls"
	fi
	teardown
}
if [ ${#sys_cases[@]} -gt 0 ]; then
	echo "== syscalls per transaction (perf stat, strace -c): ${sys_cases[*]}"
	for c in "${sys_cases[@]}"; do
		for t in $SYSCALL_TOOLS; do
			syscall_measure "$t" "$c"
			echo "  $c $t: $(cat "$TMP/sys/$c.$t.perf" 2>/dev/null)"
		done
	done
fi

# --------------------------------------------------------- idle instance --
# The memory of an attached pasta (ours, Debian's) with no traffic, then
# with IDLE_CONNS idle TCP connections from the guest through the tap path
# to a server on the host's loopback (bench/idle_conns.py at both ends:
# connects one after the other, then holds them; nothing is sent).
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
IDLE_TOOLS="ours debian"
case $IDLE_CONNS in *[!0-9]* | "") echo "BENCH_IDLE_CONNS is an integer" >&2; exit 2 ;; esac
IDLE_HOLD=$((IDLE_CONNS / 500 + 30)) # seconds the connections exist at most

# rss_settled PID: VmRSS (KiB) once two reads 0.2 s apart agree (at most 3 s).
rss_settled() {
	local a b n
	a=$(status_kib "$1" VmRSS)
	for ((n = 0; n < 15; n++)); do
		sleep 0.2
		b=$(status_kib "$1" VmRSS)
		[ "$a" = "$b" ] && break
		a=$b
	done
	echo "$b"
}
# idle_measure TOOL: appends to $TMP/res/idle.TOOL.{idle,busy,conns,fds};
# the run's line goes to $TMP/note.
idle_measure() {
	local t=$1 idle busy got fds
	: >"$TMP/note"
	teardown
	setup_ns 65520 || return
	GW="" TPID=""
	start_translator "$t" 65520 && [ -n "$TPID" ] || {
		echo "no guest route: $(tail -n1 "$TMP/$t.log" 2>/dev/null)" >"$TMP/note"
		return
	}
	idle=$(rss_settled "$TPID")
	[ -n "$idle" ] || return
	rm -f "$TMP/srv.ready" "$TMP/cli.ready"
	spawn ip netns exec "$H" timeout $((IDLE_HOLD + 5)) "$PYTHON" "$ROOT/bench/idle_conns.py" serve \
		--port 5400 --count "$IDLE_CONNS" --seconds "$IDLE_HOLD" --ready "$TMP/srv.ready" >/dev/null 2>&1
	wait_for 100 listening "$H" 5400 || return
	spawn ip netns exec "$G" timeout $((IDLE_HOLD + 5)) "$PYTHON" "$ROOT/bench/idle_conns.py" connect \
		--host "$GW" --port 5400 --count "$IDLE_CONNS" --seconds "$IDLE_HOLD" \
		--ready "$TMP/cli.ready" >/dev/null 2>&1
	wait_for $((IDLE_HOLD * 20)) test -f "$TMP/cli.ready" -a -f "$TMP/srv.ready"
	got=$(sed -n 's/^connected=\([0-9]*\).*/\1/p' "$TMP/cli.ready" 2>/dev/null)
	busy=$(rss_settled "$TPID")
	fds=$(find "/proc/$TPID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
	echo "$idle" >>"$TMP/res/idle.$t.idle"
	echo "$fds" >>"$TMP/res/idle.$t.fds"
	printf 'rss_idle=%sKiB %s %s rss=%sKiB fds=%s' "$idle" "$(cat "$TMP/cli.ready" 2>/dev/null)" \
		"$(cat "$TMP/srv.ready" 2>/dev/null)" "$busy" "$fds" >"$TMP/note"
	# Runs that opened at least 90 % of the connections count, per
	# connection held.
	if [ $((${got:-0} * 10)) -ge $((IDLE_CONNS * 9)) ] && [ -n "$busy" ]; then
		echo "$busy" >>"$TMP/res/idle.$t.busy"
		echo "$got" >>"$TMP/res/idle.$t.conns"
		awk -v a="$idle" -v b="$busy" -v n="$got" 'BEGIN { printf "%.0f\n", (b - a) * 1024 / n }' \
			>>"$TMP/res/idle.$t.perconn"
	fi
	teardown
}

if [ "$IDLE_CONNS" -gt 0 ]; then
	# Client and server each hold IDLE_CONNS sockets, the translator as many.
	hard=$(ulimit -Hn)
	if [ "$hard" != unlimited ] && [ "$hard" -lt $((IDLE_CONNS + 100)) ]; then
		echo "ulimit -Hn is $hard: BENCH_IDLE_CONNS=$IDLE_CONNS lowered to $((hard - 100))"
		IDLE_CONNS=$((hard - 100))
	fi
	ulimit -n $((IDLE_CONNS + 100))
	echo "== idle instance: RSS with no traffic and with $IDLE_CONNS idle connections"
	for ((run = 1; run <= RUNS; run++)); do
		for t in $IDLE_TOOLS; do
			idle_measure "$t"
			printf '  run %d  %-12s %-7s %s\n' "$run" idle "$t" "$(cat "$TMP/note")" |
				tee -a "$TMP/runs.txt"
		done
	done
fi

# The UDP table of the report (after the TCP one).
udp_report() {
	[ ${#udp_cases[@]} -gt 0 ] || return 0
	local c o d sl l rd rs rl goal
	echo
	echo "## UDP (tap path)"
	echo
	echo "| case | ours | Debian pasta | slirp4netns | loopback | ours/Debian | ours/slirp | ours/loopback | target |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for c in "${udp_cases[@]}"; do
		o=$(median "$TMP/res/$c.ours") d=$(median "$TMP/res/$c.debian")
		sl=$(median "$TMP/res/$c.slirp") l=$(median "$TMP/res/$c.lo")
		# host→namespace has no loopback cell: the namespace→host one.
		[ "$l" = "—" ] && l=$(median "$TMP/res/${c/_in/_out}.lo")
		rd=$(ratio "$o" "$d") rs=$(ratio "$o" "$sl") rl=$(ratio "$o" "$l")
		case $c in
		udp_*1400) goal=$(meets "≥1.2× Debian" "$rd" 1.2) ;;
		udp_out32000) goal=$(meets "≥1.0× Debian and slirp4netns" "$(lesser "$rd" "$rs")" 1.0) ;;
		*) goal="—" ;;
		esac
		case $c in
		udp_out*) desc="UDP namespace→host, ${c##*[a-z]}-byte datagrams, received (Gbit/s)" ;;
		udp_in*) desc="UDP host→namespace, ${c##*[a-z]}-byte datagrams, received (Gbit/s)" ;;
		udp_rr) desc="UDP request/response, 1 byte, pinned (per s)" ;;
		*) desc=$c ;;
		esac
		echo "| $desc | $o | $d | $sl | $(median "$TMP/res/$c.lo") | $rd | $rs | $rl | $goal |"
	done
}

# ---------------------------------------------------------------- report --
# median FILE: median of the numeric lines, "fail" if none, " (k fail)" appended.
median() {
	[ -f "$1" ] || { echo "—"; return; }
	awk '/^-?[0-9.]+$/ { v[n++] = $1; next } { f++ }
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
# meets GOAL VALUE WANT: "GOAL: met" if VALUE ≥ WANT, "not met", "—" if
# VALUE is not a number.
meets() {
	awk -v g="$1" -v v="$2" -v w="$3" 'BEGIN {
		if (v !~ /^[0-9.]+$/) { print g ": —"; exit }
		print g ": " (v + 0 >= w + 0 ? "met" : "not met") }'
}
# lesser A B: the smaller of two numbers, "—" unless both are numbers.
lesser() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/) { print "—"; exit }
		print (a + 0 < b + 0 ? a : b) }'
}
# target CASE OURS/DEBIAN OURS/LOOPBACK OURS/SLIRP -> "goal: met?"
target() {
	case $1 in
	in65520) meets "≥1.3× Debian" "$2" 1.3 ;;
	out65520) meets "≥0.6× loopback" "$3" 0.6 ;;
	in1500 | out1500) meets "≥1.5× Debian" "$2" 1.5 ;;
	# Pinned (see PIN_CLI): the issue's figures are pinned ones.
	rr) awk -v l="$3" -v s="$4" 'BEGIN {
		g = "≥1.0× loopback, ≥1.5× slirp4netns"
		if (l !~ /^[0-9.]+$/ || s !~ /^[0-9.]+$/) { print g ": —"; exit }
		print g ": " (l + 0 >= 1.0 && s + 0 >= 1.5 ? "met" : "not met") }' ;;
	crr) meets "≥0.6× loopback" "$3" 0.6 ;;
	spl*) splice_target "$2" "$3" ;;
	*) echo "—" ;;
	esac
}
describe() {
	case $1 in
	in65520) echo "TCP host→namespace, tap MTU 65520 (Gbit/s)" ;;
	out65520) echo "TCP namespace→host, tap MTU 65520 (Gbit/s)" ;;
	in1500) echo "TCP host→namespace, tap MTU 1500 (Gbit/s)" ;;
	out1500) echo "TCP namespace→host, tap MTU 1500 (Gbit/s)" ;;
	rr) echo "TCP request/response, 1 byte, pinned (per s)" ;;
	crr) echo "TCP connect+request+response+close, pinned (per s)" ;;
	spl_in) echo "TCP splice, host 127.0.0.1 → namespace via -t (Gbit/s)" ;;
	spl_out) echo "TCP splice, namespace 127.0.0.1 → host via -T (Gbit/s)" ;;
	*) echo "$1" ;;
	esac
}

# mib KIB: KiB (a median, maybe with " (k fail)") as MiB with one decimal.
mib() {
	awk -v k="${1%% *}" 'BEGIN { if (k !~ /^[0-9.]+$/) print "—"; else printf "%.1f\n", k / 1024 }'
}
# The translators' CPU per GB (or per transaction) and peak RSS, every case.
cost_report() {
	local c o d sl rd unit goal
	echo
	echo "## CPU and memory of the translator"
	echo
	echo "CPU: user + system time of the translator process during the timed"
	echo "measurement, per GB received (throughput cases) or in µs per transaction"
	echo "(request/response). Peak RSS: its VmHWM at the end of the measurement, MiB."
	echo
	echo "| case | CPU ours | CPU Debian | CPU slirp | CPU ours/Debian | target | peak RSS ours | Debian | slirp | RSS ours/Debian |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	for c in "${cases[@]}" "${udp_cases[@]}"; do
		o=$(median "$TMP/res/$c.ours.cpu") d=$(median "$TMP/res/$c.debian.cpu")
		sl=$(median "$TMP/res/$c.slirp.cpu") rd=$(ratio "$o" "$d")
		case $c in
		*rr) unit="µs/transaction" goal="—" ;;
		udp*) unit="s/GB" goal="—" ;;
		*) unit="s/GB" goal=$(awk -v v="$rd" 'BEGIN {
			if (v !~ /^[0-9.]+$/) { print "≤0.6× Debian: —"; exit }
			print "≤0.6× Debian: " (v + 0 <= 0.6 ? "met" : "not met") }') ;;
		esac
		echo "| $c ($unit) | $o | $d | $sl | $rd | $goal | $(mib "$(median "$TMP/res/$c.ours.rss")") |" \
			"$(mib "$(median "$TMP/res/$c.debian.rss")") | $(mib "$(median "$TMP/res/$c.slirp.rss")") |" \
			"$(ratio "$(median "$TMP/res/$c.ours.rss")" "$(median "$TMP/res/$c.debian.rss")") |"
	done
}

# Syscalls per transaction: perf's totals, then strace's breakdown.
syscall_report() {
	[ ${#sys_cases[@]} -gt 0 ] || return 0
	local c t f
	echo
	echo "## Syscalls per transaction"
	echo
	echo "Translator only, pinned tcp_rr client and server as in the timed runs, in a"
	echo "separate run: \`perf stat -e raw_syscalls:sys_enter,context-switches -p PID\`"
	echo "over a ${SECS} s client run, divided by the transactions of that run."
	echo
	echo "| case | syscalls ours | syscalls Debian | context switches ours | context switches Debian | transactions ours / Debian |"
	echo "|---|---|---|---|---|---|"
	for c in "${sys_cases[@]}"; do
		printf '| %s' "$c"
		for f in syscalls cswitch; do
			for t in ours debian; do
				printf ' | %s' "$(per_tr "$TMP/sys/$c.$t.perf" "$f")"
			done
		done
		printf ' | %s / %s |\n' "$(per_tr "$TMP/sys/$c.ours.perf" transactions)" \
			"$(per_tr "$TMP/sys/$c.debian.perf" transactions)"
	done
	for c in "${sys_cases[@]}"; do
		echo
		echo "### $c: system calls per transaction by name"
		echo
		echo "perf: a run of its own (at most 2 s) counting \`syscalls:sys_enter_NAME\` for"
		echo "the names in \`SYSCALL_NAMES\`; its \"all\" row counts every call. strace:"
		echo "\`strace -c -f -p PID\` over another such run; strace stops the translator at"
		echo "every call, which changes how often its loops find work waiting. The"
		echo "largest 12 by perf, then the totals with the transactions of each run."
		echo
		echo "| syscall | ours (perf) | Debian (perf) | ours (strace) | Debian (strace) |"
		echo "|---|---|---|---|---|"
		awk '
			FNR == 1 { f++ }
			/^transactions=/ { split($0, kv, "="); tr[f] = kv[2]; next }
			# strace has no "all" line: its total is the sum.
			NF == 2 && $1 == "all" { all[f] = $2; next }
			NF == 2 { calls[$1, f] += $2; if (f > 2) all[f] += $2; names[$1] = 1 }
			function cell(n, i) { return tr[i] > 0 ? sprintf("%.2f", calls[n, i] / tr[i]) : "—" }
			END {
				for (n in names) {
					k = (tr[1] > 0 ? calls[n, 1] / tr[1] : 0) + (tr[2] > 0 ? calls[n, 2] / tr[2] : 0)
					printf "%f\t| %s | %s | %s | %s | %s |\n", k, n, cell(n, 1), cell(n, 2), cell(n, 3), cell(n, 4)
				}
				printf "-1\t| all (transactions)"
				for (i = 1; i <= 4; i++)
					printf " | %s", (tr[i] > 0 ? sprintf("%.2f (%d)", all[i] / tr[i], tr[i]) : "—")
				print " |"
			}' "$TMP/sys/$c.ours.perf.calls" "$TMP/sys/$c.debian.perf.calls" \
			"$TMP/sys/$c.ours.strace.calls" "$TMP/sys/$c.debian.strace.calls" 2>/dev/null |
			sort -t "$(printf '\t')" -k1,1gr | cut -f2- | awk '/^\| all/ { last = $0; next } n++ < 12 { print } END { print last }'
	done
}
# per_tr FILE FIELD: FIELD of a perf summary line per transaction (the
# transaction count itself for FIELD=transactions).
per_tr() {
	[ -f "$1" ] || { echo "—"; return; }
	awk -v f="$2" '{
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		if (f == "transactions") print v[f]
		else if (v["transactions"] > 0 && v[f] ~ /^[0-9]+$/) printf "%.2f\n", v[f] / v["transactions"]
		else print "—"
	} END { if (NR == 0) print "—" }' "$1"
}
# The idle instance's RSS.
idle_report() {
	[ "$IDLE_CONNS" -gt 0 ] || return 0
	local t
	echo
	echo "## Idle instance"
	echo
	echo "VmRSS of an attached pasta with no traffic, then with $IDLE_CONNS idle TCP"
	echo "connections from the guest to a server on the host's loopback, through the tap"
	echo "(\`bench/idle_conns.py\`); median of $RUNS run(s). Per connection: (RSS with"
	echo "connections − idle RSS) / connections open, runs that opened at least 90 %."
	echo
	echo "| | ours | Debian pasta | target |"
	echo "|---|---|---|---|"
	printf '| idle RSS (MiB) | %s | %s | %s |\n' "$(mib "$(median "$TMP/res/idle.ours.idle")")" \
		"$(mib "$(median "$TMP/res/idle.debian.idle")")" \
		"$(awk -v k="$(median "$TMP/res/idle.ours.idle")" 'BEGIN {
			if (k !~ /^[0-9.]+$/) { print "≤6 MB: —"; exit }
			print "≤6 MB: " (k * 1024 <= 6e6 ? "met" : "not met") }')"
	printf '| RSS with %s connections (MiB) | %s | %s | |\n' "$IDLE_CONNS" \
		"$(mib "$(median "$TMP/res/idle.ours.busy")")" "$(mib "$(median "$TMP/res/idle.debian.busy")")"
	printf '| connections open (of %s) | %s | %s | |\n' "$IDLE_CONNS" \
		"$(median "$TMP/res/idle.ours.conns")" "$(median "$TMP/res/idle.debian.conns")"
	printf "| translator's descriptors then | %s | %s | |\n" \
		"$(median "$TMP/res/idle.ours.fds" | sed "s/\.00//")" "$(median "$TMP/res/idle.debian.fds" | sed "s/\.00//")"
	printf '| bytes per idle connection | %s | %s | %s |\n' "$(median "$TMP/res/idle.ours.perconn" | sed 's/\.00//')" \
		"$(median "$TMP/res/idle.debian.perconn" | sed 's/\.00//')" \
		"$(awk -v b="$(median "$TMP/res/idle.ours.perconn")" 'BEGIN {
			if (b !~ /^-?[0-9.]+$/) { print "≤2 KB: —"; exit }
			print "≤2 KB: " (b <= 2000 ? "met" : "not met") }')"
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
		rd=$(ratio "$o" "$d") rl=$(ratio "$o" "$lref") rs=$(ratio "$o" "$s")
		echo "| $(describe "$c") | $o | $d | $s | $v | $l | $rd | $rl | $(target "$c" "$rd" "$rl" "$rs") |"
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
cost_report >>"$TMP/report.md"
syscall_report >>"$TMP/report.md"
idle_report >>"$TMP/report.md"
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
