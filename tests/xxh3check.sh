#!/usr/bin/env bash
# tests/xxh3check.sh [--bench] - checks xxh3.c (XXH3-128) against the
# reference tool `xxhsum -H2` (Debian package xxhash).
#
#   1. builds tests/xxh3check.c + xxh3.c in a temporary directory, with -Werror
#      and -std=c11 -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes
#      -Wmissing-prototypes -Wformat=2 -O2, as: gcc and clang, each with SSE2
#      and with -DXXH3_PORTABLE; gcc -DXXH3_PORTABLE without __int128
#      (-U__SIZEOF_INT128__) and with octet-by-octet loads (-U__BYTE_ORDER__);
#      gcc -fsanitize=address,undefined (SSE2 and portable). When the cross
#      compilers and qemu-user are installed, also static s390x (big-endian)
#      and armhf (32-bit ARM) builds, run under qemu. A failed build is a
#      failure.
#   2. inputs: every length 0..1100 with random, all-zero and all-0xff content;
#      lengths around the block and buffer boundaries up to 1 MiB + 64; 24
#      random lengths up to 4 MiB (16 random, 4 zero, 4 0xff content).
#   3. every build hashes every input (the sanitizer and qemu builds a subset:
#      every 7th length 0..1100, 5 boundary lengths, 11 of the random lengths
#      with all the zero and 0xff ones) with `xxh3check -c`:
#      random update() splits, checked inside against one-shot, octet-by-octet
#      and midway final() hashes (it aborts on a difference). Each printed
#      hash is compared with xxhsum -H2 of the same file: one test each.
#      Plus, per build, one test `xxh3check -e`: every two-piece split of every
#      length 0..1100 (and final() at the cut) and many three-piece splits,
#      against the one-shot hash.
#   4. a closing line "N passed, N failed"; exit status 1 if anything failed.
#
# --bench: afterwards hash 1 GiB in memory with the gcc and clang builds, both
# paths, and print the GB/s. $SEED fixes the update splits (default: random);
# on failure the inputs and outputs are kept and their directory is printed.
set -u

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
TOP=$(pwd)

BENCH=no
for a in "$@"; do
	case $a in
	--bench) BENCH=yes ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
	*) echo "xxh3check.sh: unknown argument: $a" >&2; exit 2 ;;
	esac
done

if ! command -v xxhsum >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y xxhash >/dev/null 2>&1 ||
		{ apt-get update >/dev/null 2>&1 &&
		  DEBIAN_FRONTEND=noninteractive apt-get install -y xxhash >/dev/null 2>&1; }
	fi
	if ! command -v xxhsum >/dev/null 2>&1; then
		echo "xxh3check.sh: xxhsum not found: apt-get install -y xxhash" >&2
		exit 2
	fi
fi

WORK=$(mktemp -d /tmp/pop3d-xxh3.XXXXXX) || exit 1
IN=$WORK/in
mkdir -p "$IN" "$WORK/bin" "$WORK/out"
: "${SEED:=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "xxh3check.sh: seed $SEED, work directory $WORK"

passed=0
failed=0

WARN="-std=c11 -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes
	-Wmissing-prototypes -Wformat=2 -O2 -Werror"
SRC="$TOP/tests/xxh3check.c $TOP/xxh3.c"

# build NAME CC [FLAGS...]: builds $WORK/bin/NAME; a failure counts as a test.
BUILT=()
build() {
	local name=$1 cc=$2
	shift 2
	if ! command -v "$cc" >/dev/null 2>&1; then
		echo "SKIP $name: no $cc"
		return
	fi
	# shellcheck disable=SC2086
	if $cc $WARN "$@" -I"$TOP" -o "$WORK/bin/$name" $SRC \
	    >"$WORK/out/$name.build" 2>&1; then
		passed=$((passed + 1))
		BUILT+=("$name")
	else
		failed=$((failed + 1))
		echo "FAIL build $name: $cc $*"
		sed 's/^/    /' "$WORK/out/$name.build" | head -20
	fi
}

build gcc-sse2 gcc
build gcc-portable gcc -DXXH3_PORTABLE
build clang-sse2 clang
build clang-portable clang -DXXH3_PORTABLE
build gcc-noint128 gcc -DXXH3_PORTABLE -U__SIZEOF_INT128__
build gcc-bytewise gcc -DXXH3_PORTABLE -U__BYTE_ORDER__
ASAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined
	-fno-omit-frame-pointer -g"
# shellcheck disable=SC2086
build asan-sse2 gcc $ASAN
# shellcheck disable=SC2086
build asan-portable gcc $ASAN -DXXH3_PORTABLE
# cross build NAME CC QEMU DEB-ARCH: only when the tools are installed
cross() {
	if command -v "$2" >/dev/null 2>&1 && command -v "$3" >/dev/null 2>&1; then
		build "$1" "$2" -static
	else
		echo "SKIP $1: needs gcc-$4, libc6-dev-$4-cross and qemu-user"
	fi
}
cross s390x s390x-linux-gnu-gcc qemu-s390x s390x	# 64-bit big-endian
cross armhf arm-linux-gnueabihf-gcc qemu-arm armhf	# 32-bit, no __int128

# ---- inputs ----
head -c 4194304 /dev/urandom >"$WORK/pool.r"
head -c 4194304 /dev/zero >"$WORK/pool.z"
tr '\0' '\377' <"$WORK/pool.z" >"$WORK/pool.f"
ALL=()
SUBSET=()
for n in $(seq 0 1100); do
	for c in r z f; do
		head -c "$n" "$WORK/pool.$c" >"$IN/$c$n"
		ALL+=("$c$n")
		[ $((n % 7)) = 0 ] && SUBSET+=("$c$n")
	done
done
i=0
for n in 1279 1280 1281 2047 2048 2049 4095 4096 4097 16383 16384 16385 \
    65535 65536 65537 65600 1048575 1048576 1048577 1048639 1048640; do
	head -c "$n" /dev/urandom >"$IN/b$n"
	ALL+=("b$n")
	[ $((i % 5)) = 0 ] && SUBSET+=("b$n")
	i=$((i + 1))
done
for i in $(seq 1 24); do
	n=$(( $(od -An -N4 -tu4 /dev/urandom | tr -d ' ') % 4194305 ))
	case $((i % 6)) in
	0) head -c "$n" "$WORK/pool.z" >"$IN/L$i-z$n" ;;
	1) head -c "$n" "$WORK/pool.f" >"$IN/L$i-f$n" ;;
	*) head -c "$n" /dev/urandom >"$IN/L$i-r$n" ;;
	esac
	name=$(cd "$IN" && echo "L$i-"*)
	ALL+=("$name")
	[ $((i % 6)) -lt 2 ] || [ "$i" -le 4 ] && SUBSET+=("$name")
done
rm -f "$WORK/pool.r" "$WORK/pool.z" "$WORK/pool.f"

(cd "$IN" && xxhsum -H2 -- "${ALL[@]}") >"$WORK/ref" 2>"$WORK/ref.err" || {
	echo "xxh3check.sh: xxhsum failed:"; cat "$WORK/ref.err"; exit 2; }
echo "xxh3check.sh: ${#ALL[@]} inputs, ${#SUBSET[@]} of them in the subset"

# ---- run ----
k=0
for name in "${BUILT[@]}"; do
	k=$((k + 1))
	run=()
	files=("${ALL[@]}")
	case $name in
	asan-*) files=("${SUBSET[@]}") ;;
	s390x) run=(qemu-s390x); files=("${SUBSET[@]}") ;;
	armhf) run=(qemu-arm); files=("${SUBSET[@]}") ;;
	esac
	seed=$((SEED + k))
	(cd "$IN" &&
	    "${run[@]}" "$WORK/bin/$name" -c -s "$seed" -- "${files[@]}") \
	    >"$WORK/out/$name" 2>"$WORK/out/$name.err"
	rc=$?
	if [ "$rc" != 0 ]; then
		failed=$((failed + 1))
		echo "FAIL $name: exit status $rc (seed $seed):"
		grep -v '^xxh3check: seed' "$WORK/out/$name.err" | head -20 |
		    sed 's/^/    /'
	fi
	if "${run[@]}" "$WORK/bin/$name" -e >"$WORK/out/$name.e" 2>&1; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAIL $name -e:"
		head -20 "$WORK/out/$name.e" | sed 's/^/    /'
	fi
	# one test per input: the hash printed for it must be xxhsum's
	res=$(printf '%s\n' "${files[@]}" | awk -v build="$name" -v seed="$seed" '
		FILENAME == ARGV[1] { ref[$2] = $1; next }
		FILENAME == ARGV[2] { got[$2] = $1; next }
		{
			if ($1 in got && got[$1] == ref[$1]) { ok++; next }
			bad++
			if (bad <= 10)
				printf "FAIL %s: %s: got %s, xxhsum %s (seed %s)\n",
				    build, $1, ($1 in got) ? got[$1] : "nothing",
				    ref[$1], seed
		}
		END { printf "%d %d\n", ok, bad }' "$WORK/ref" "$WORK/out/$name" -)
	printf '%s\n' "$res" | sed '$d'
	read -r ok bad <<<"$(printf '%s\n' "$res" | tail -1)"
	passed=$((passed + ok))
	failed=$((failed + bad))
	echo "$name: $ok of ${#files[@]} inputs match xxhsum -H2;" \
	    "$(tail -1 "$WORK/out/$name.e")"
done

if [ "$BENCH" = yes ]; then
	for name in gcc-sse2 gcc-portable clang-sse2 clang-portable; do
		[ -x "$WORK/bin/$name" ] || continue
		echo "bench $name:"
		"$WORK/bin/$name" -b 1024 | sed 's/^/    /'
	done
fi

echo "$passed passed, $failed failed"
if [ "$failed" -gt 0 ]; then
	echo "xxh3check.sh: inputs and outputs kept in $WORK"
	exit 1
fi
rm -rf "$WORK"
exit 0
