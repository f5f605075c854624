#!/usr/bin/env bash
# Runs every cargo-fuzz target (`cargo fuzz list`, fuzz/fuzz_targets) for a
# bounded time on its committed corpus, as CI does (test.sh calls it):
#
#   scripts/fuzz.sh [SECONDS]    (default 30 per target)
#
# Environment: FUZZ_SANITIZER=address|none (default address: `cargo fuzz`'s
# AddressSanitizer build; `none` runs several times faster, and our crate
# has no `unsafe` outside src/sys, so a long run for execution counts may
# use it), FUZZ_JOBS=N (targets run N at a time, default 1), FUZZ_KEEP=DIR
# (keep the inputs found, per target, in DIR/TARGET; default: a temporary
# directory, deleted).
#
# The committed corpus (fuzz/corpus/TARGET) is only read: inputs that add
# coverage go to a scratch directory, crash inputs to an artifacts directory
# that is printed. Fails if any target crashes, times out (10 s for one
# input) or runs out of memory, or if a target has no corpus. Prints per
# target the executions done and their rate (libFuzzer's final stats).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs=${1:-30}
san=${FUZZ_SANITIZER:-address}
jobs=${FUZZ_JOBS:-1}

# The tools: nightly (cargo fuzz needs -Z flags) and cargo-fuzz itself.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
	rustup toolchain install nightly --profile minimal
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
	echo "fuzz: no nightly toolchain, and rustup could not install one" >&2
	exit 1
fi
if ! cargo fuzz --help >/dev/null 2>&1; then
	cargo install cargo-fuzz --locked
fi

echo "== cargo fuzz build (sanitizer: $san)"
cargo +nightly fuzz build -s "$san"
mapfile -t targets < <(cargo +nightly fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz: no targets" >&2
	exit 1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
keep=${FUZZ_KEEP:-$scratch/found}

run_one() {
	local t=$1
	local out="$keep/$t" art="$scratch/artifacts/$t/" log="$scratch/$t.log"
	mkdir -p "$out" "$art"
	if [ -z "$(ls -A "corpus/$t" 2>/dev/null)" ]; then
		echo "fuzz: $t has no corpus in fuzz/corpus/$t" >"$log"
		echo 1 >"$scratch/$t.rc"
		return
	fi
	# The first directory receives new inputs; the committed one is read.
	set +e
	cargo +nightly fuzz run -s "$san" "$t" "$out" "corpus/$t" -- \
		-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$art" >"$log" 2>&1
	echo $? >"$scratch/$t.rc"
	set -e
}

running=0
for t in "${targets[@]}"; do
	echo "== fuzz $t (${secs} s)"
	run_one "$t" &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait -n || true
		running=$((running - 1))
	fi
done
wait

failed=0
printf '%-12s %14s %10s %8s  %s\n' target executions exec/s new result
for t in "${targets[@]}"; do
	log="$scratch/$t.log"
	rc=$(cat "$scratch/$t.rc")
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	new=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
	if [ "$rc" = 0 ]; then
		result=ok
	else
		result="FAILED (exit $rc)"
		failed=1
	fi
	printf '%-12s %14s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${new:-?}" "$result"
	if [ "$rc" != 0 ]; then
		echo "---- $t: end of the log" >&2
		tail -n 60 "$log" >&2
		for a in "$scratch/artifacts/$t"/*; do
			[ -e "$a" ] || continue
			echo "---- $t: crash input (base64) $(basename "$a")" >&2
			base64 -w0 "$a" >&2
			echo >&2
		done
	fi
done
exit "$failed"
