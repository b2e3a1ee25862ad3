#!/usr/bin/env bash
# keepbench.sh: what does keeping tcp's connections (issue 12) cost bulk
# TCP? One build, this checkout, measured both ways in one run,
# interleaved: "nokeep" boots with keepnet.keep=off (tcp gets no kept
# memory, its connections die with it), "keep" as the appliance runs. The
# ratio keep/nokeep is the cost (issue 12 asks for at most 5%).
#
# KEEPNET_BENCH_ROUNDS, KEEPNET_BENCH_BYTES and KEEPNET_AB_PAIRED are
# passed on as for scripts/abbench.sh; the report goes to
# images/out/keepbench.md (KEEPNET_BENCH_OUT). Needs root and images/kernel.
set -euo pipefail
here=$(git rev-parse --show-toplevel)
cd "$here"
test -f images/kernel/bzImage || { echo "keepbench: no images/kernel: run 'make kernel' first" >&2; exit 1; }
make all image >&2
KEEPNET_ITEST=1 KEEPNET_BENCH_OUT=${KEEPNET_BENCH_OUT:-images/out/keepbench.md} \
	KEEPNET_AB="nokeep=$here;keepnet.keep=off,keep=$here" go test -run '^$' -bench '^BenchmarkTCPBulkAB$' \
	-benchtime 1x -timeout 120m ./qemu/itest
