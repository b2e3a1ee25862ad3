#!/usr/bin/env bash
# hugepages.sh N: make sure the host has at least N 2 MiB huge pages reserved,
# for the packet-pool tests that check physical addresses. Needs root.
set -euo pipefail
want=${1:?usage: hugepages.sh N}
knob=/proc/sys/vm/nr_hugepages
have=$(cat "$knob")
if [ "$have" -lt "$want" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "hugepages: $have huge pages reserved, the pool tests need $want: run as root, or echo $want > $knob" >&2
		exit 1
	fi
	echo "$want" >"$knob"
fi
