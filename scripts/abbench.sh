#!/usr/bin/env bash
# abbench.sh [OLD [NEW]]: is commit NEW's bulk TCP slower than OLD's?
#
# Two `make bench` runs taken at different times cannot say: on a shared
# host the Linux baseline alone moves by tens of percent between them. This
# builds both commits and measures them in one run, interleaved (old, new;
# new, old; ...), one guest at a time, and reports the median rates and the
# CPU time per MB of QEMU, the guest and each guest component
# (qemu/itest BenchmarkTCPBulkAB).
#
#   OLD  a commit (default: 98cc0c5, the one before issue 10's refactor),
#        checked out with `git worktree add` under /tmp and built there
#   NEW  a commit, or "." (the default) for this checkout as it is, which
#        is built here (make all image)
#
# KEEPNET_BENCH_ROUNDS (default 5) and KEEPNET_BENCH_BYTES (default
# 100000000,50000000: down,up) are passed on. The report goes to
# images/out/abbench.md (KEEPNET_BENCH_OUT). Needs root (namespaces, tap
# devices) and images/kernel (make kernel), which the other checkouts share.
# Remove the /tmp worktrees with `git worktree remove /tmp/kn-ab-COMMIT`.
set -euo pipefail
old=${1:-98cc0c5}
new=${2:-.}
here=$(git rev-parse --show-toplevel)
cd "$here"
test -f images/kernel/bzImage || { echo "abbench: no images/kernel: run 'make kernel' first" >&2; exit 1; }

# checkout COMMIT: a built worktree of COMMIT under /tmp; prints its path.
checkout() {
	local sha dir
	sha=$(git rev-parse --short "$1^{commit}")
	dir=/tmp/kn-ab-$sha
	if [ ! -d "$dir" ]; then
		git worktree add --detach "$dir" "$sha" >&2
	fi
	if [ ! -d "$dir/images/kernel" ]; then
		mkdir -p "$dir/images"
		cp -al images/kernel "$dir/images/kernel" 2>/dev/null || cp -a images/kernel "$dir/images/kernel"
	fi
	make -C "$dir" all image >&2
	echo "$dir"
}

# build SPEC: NAME=DIR for "." (this checkout) or a commit.
build() {
	if [ "$1" = . ]; then
		make -C "$here" all image >&2
		local name
		name=$(git rev-parse --short HEAD)
		git diff --quiet HEAD -- || name=$name+
		echo "$name=$here"
	else
		echo "$(git rev-parse --short "$1^{commit}")=$(checkout "$1")"
	fi
}

a=$(build "$old")
b=$(build "$new")
echo "abbench: old ${a%%=*} (${a#*=}), new ${b%%=*} (${b#*=})"
KEEPNET_ITEST=1 KEEPNET_AB="$a,$b" go test -run '^$' -bench '^BenchmarkTCPBulkAB$' \
	-benchtime 1x -timeout 120m ./qemu/itest
