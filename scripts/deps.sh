#!/usr/bin/env bash
# deps.sh: make sure the host has what `make run` and `make test` use.
# As root on Debian/Ubuntu it installs what is missing with apt-get;
# otherwise it names the packages to install and fails.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-system-x86_64 || need+=(qemu-system-x86)
have apt-get && { have dpkg-deb || need+=(dpkg); }
if [ "${KEEPNET_TEST_DEPS:-1}" = 1 ]; then
	have curl || need+=(curl)
	have ip || need+=(iproute2)
	have ping || need+=(iputils-ping)
	have dnsmasq || need+=(dnsmasq-base)
	have ssh || need+=(openssh-client)
	have nmap || need+=(nmap)
	have nft || need+=(nftables) # the keep-alive test's firewall rule in its namespace
	have chromium || need+=(chromium)
	# make images, which make test boots (images/bootimg), and OVMF for
	# its UEFI boots (SeaBIOS comes with QEMU)
	have grub-mkimage || need+=(grub-common)
	[ -d /usr/lib/grub/i386-pc ] || need+=(grub-pc-bin)
	[ -d /usr/lib/grub/x86_64-efi ] || need+=(grub-efi-amd64-bin)
	have xorriso || need+=(xorriso)
	have mcopy || need+=(mtools)
	have sfdisk || need+=(fdisk)
	[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
fi
if [ "${KEEPNET_BENCH_DEPS:-0}" = 1 ]; then
	# make bench's HTTP clients (BenchmarkRequestRates)
	have wrk || need+=(wrk)
	have ab || need+=(apache2-utils)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && have apt-get; then
	echo "deps: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
else
	echo "deps: missing packages: ${need[*]}; install them (Debian/Ubuntu: sudo apt-get install ${need[*]})" >&2
	exit 1
fi
