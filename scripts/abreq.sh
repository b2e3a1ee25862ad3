#!/usr/bin/env bash
# abreq.sh ROUNDS LABEL=INITRD [LABEL=INITRD ...]: request rates and ping of
# two or more builds, interleaved in one run.
#
# Each INITRD is an initramfs of `make image` (copy images/out/initramfs.cpio
# aside after building each commit). For each round and each build in turn it
# boots a fresh guest on a tap device in a network namespace of its own, then
# measures from the namespace: the median of 300 pings 10 ms apart (after 20
# to warm the path), wrk with one connection for 5 s, ab with 100 connections
# at a time and one request on each for 8 s, and wrk with 400 keep-alive
# connections for 8 s (GET /bytes?n=1024 of the appliance's httpd); then it
# powers the guest off and removes the namespace. One line per run, and
# under it what the stack's processes (every component but the
# applications) spent per ping and per request: their context switches and
# their CPU time in ms per thousand (keepnet status --json before and
# after each load; the counts move less with the host's speed than rates):
#
#   round 1 old: ping_med_ms=1.77 wrk1=218.19 ab=476.47 wrk400=2006.56 load=1.12
#     stack: ping 6.33 sw 3000 ms/k; wrk1 13.00 sw 2767 ms/k; ab 3.29 sw 1164 ms/k; wrk400 0.74 sw 282 ms/k
#
# On this shared host the speed moves by the minute: compare medians over
# the rounds, never two runs. Needs root, wrk, ab (apache2-utils), ping, and
# bin/keepnet (make all), python3. The namespace is kn-abreq, 10.99.0.0/24.
set -euo pipefail
if [ $# -lt 2 ]; then
	sed -n '2,/^set/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
fi
rounds=$1
shift
here=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
keepnet=$here/bin/keepnet
ns=kn-abreq
ctl=/tmp/$ns.sock
guest=10.99.0.2

cleanup() {
	"$keepnet" down --ctl "$ctl" >/dev/null 2>&1 || true
	ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT

# snap FILE: the appliance's status, for stack below.
snap() { "$keepnet" status --json --interval 0 --ctl "$ctl" >"$1" 2>/dev/null || true; }

# stack NAME BEFORE AFTER N: the stack's switches and CPU per unit of N.
stack() {
	python3 - "$@" <<'PY'
import json, sys
name, before, after, n = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4] or 0)
apps = {"httpd", "echo", "resolver", "sshd"}
try:
    a = {c["name"]: c for c in json.load(open(before))["components"]}
    b = json.load(open(after))["components"]
except (OSError, ValueError, KeyError):
    print(f"{name} none", end="")
    sys.exit()
sw = cpu = 0
for c in b:
    p = a.get(c["name"])
    if c["name"] in apps or not p or p["pid"] != c["pid"]:
        continue
    sw += sum(c["ctxsw"].values()) - sum(p["ctxsw"].values())
    cpu += c["cpu_ms"] - p["cpu_ms"]
print(f"{name} {sw / n:.2f} sw {cpu / n * 1000:.0f} ms/k" if n else f"{name} none", end="")
PY
}

# run LABEL INITRD: one guest, two lines.
run() {
	local label=$1 initrd=$2 ping wrk1 ab wrk400 out counts=() s=/tmp/$ns.status
	cleanup
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip -n "$ns" tuntap add dev tap0 mode tap
	ip -n "$ns" addr add 10.99.0.1/24 dev tap0
	ip -n "$ns" link set tap0 up
	if ! ip netns exec "$ns" "$keepnet" up --detach --net tap:tap0 --ip "$guest/24" --gw 10.99.0.1 \
		--ctl "$ctl" --console "/tmp/$ns.console" --initrd "$initrd" >/dev/null 2>&1; then
		echo "$label: did not boot (console: /tmp/$ns.console)"
		return
	fi
	ip netns exec "$ns" ping -q -c 20 -i 0.05 -W 2 "$guest" >/dev/null || true
	snap "$s.a"
	ping=$(ip netns exec "$ns" ping -c 300 -i 0.01 -W 2 "$guest" |
		awk -F'time=' '/time=/ {split($2, a, " "); print a[1]}' | sort -n |
		awk '{v[NR] = $1} END {print (NR ? v[int(NR/2)+1] : "none")}')
	snap "$s.b"
	counts+=("$(stack ping "$s.a" "$s.b" 300)")
	out=$(ip netns exec "$ns" wrk -t1 -c1 -d5s "http://$guest/bytes?n=1024" 2>&1)
	snap "$s.a"
	wrk1=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	counts+=("$(stack wrk1 "$s.b" "$s.a" "$(awk '/requests in/ {print $1}' <<<"$out")")")
	out=$(ip netns exec "$ns" ab -q -t 8 -n 1000000 -c 100 "http://$guest/bytes?n=1024" 2>&1)
	snap "$s.b"
	ab=$(awk '/Requests per second/ {print $4}' <<<"$out")
	counts+=("$(stack ab "$s.a" "$s.b" "$(awk '/Complete requests/ {print $3}' <<<"$out")")")
	out=$(ip netns exec "$ns" wrk -t2 -c400 -d8s "http://$guest/bytes?n=1024" 2>&1)
	snap "$s.a"
	wrk400=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	counts+=("$(stack wrk400 "$s.b" "$s.a" "$(awk '/requests in/ {print $1}' <<<"$out")")")
	echo "round $r $label: ping_med_ms=$ping wrk1=${wrk1:-none} ab=${ab:-none} wrk400=${wrk400:-none} load=$(cut -d' ' -f1 /proc/loadavg)"
	local IFS=';'
	echo "  stack: ${counts[*]}" | sed 's/;/; /g'
}

for r in $(seq 1 "$rounds"); do
	for spec in "$@"; do
		run "${spec%%=*}" "${spec#*=}"
	done
done
