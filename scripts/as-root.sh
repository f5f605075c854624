# Sourced by test.sh and bench/run.sh, which need root (network namespaces,
# tap devices, apt-get). `as_root SCRIPT ARGS...` returns at once as root;
# as another user it re-runs SCRIPT through sudo, or su where there is no
# sudo (a fresh Debian installed with a root password has none), or stops
# with a message saying what to do. The caller's cargo stays in reach:
# sudo resets PATH (secure_path) and su may, so PATH, CARGO_HOME and
# RUSTUP_HOME travel through env(1), which needs no sudoers setenv rights.
# `give_back` (run it on exit) then hands the caller back what the root run
# created in target/ and in their cargo and rustup homes, so that cargo
# keeps working without root afterwards.
#
# Environment passed on: PATH CARGO_HOME RUSTUP_HOME and the names listed
# in AS_ROOT_KEEP (those that are set).

as_root() {
	local script=$1 name v
	shift
	[ "$(id -u)" != 0 ] || return 0
	local keep=(env "PATH=$PATH"
		"CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}"
		"RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}"
		"PASSTRS_CALLER=$(id -u):$(id -g)")
	for name in ${AS_ROOT_KEEP:-}; do
		v=${!name-}
		[ -z "${!name+set}" ] || keep+=("$name=$v")
	done
	if command -v sudo >/dev/null 2>&1; then
		exec sudo "${keep[@]}" "$script" "$@"
	elif command -v su >/dev/null 2>&1; then
		echo "${script##*/}: needs root and there is no sudo: su asks for root's password" >&2
		exec su -c 'exec "$@"' -- root "${script##*/}" "${keep[@]}" "$script" "$@"
	fi
	echo "${script##*/}: needs root (network namespaces, apt-get) and found neither sudo nor su: run it as root" >&2
	exit 1
}

give_back() {
	local owner=${PASSTRS_CALLER:-} uid d
	[ -n "$owner" ] || return 0
	uid=${owner%%:*}
	# Only in places of the caller's: the checkout (target/ may be new),
	# their cargo and rustup homes (not a system-wide one).
	for d in target "${CARGO_HOME:-}" "${RUSTUP_HOME:-}"; do
		[ -n "$d" ] && [ -d "$d" ] || continue
		[ "$(stat -c %u "$d/..")" = "$uid" ] || [ "$(stat -c %u "$d")" = "$uid" ] || continue
		find "$d" ! -user "$uid" -exec chown -h "$owner" {} + 2>/dev/null || true
	done
}
