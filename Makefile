# keepnet — the two commands a newcomer needs are `make run` and `make test`.
#
#   make            build the host command bin/keepnet
#   make kernel     put a guest kernel and its modules under images/kernel/
#                   (Debian's linux-image-amd64 by default, or
#                    KERNEL=/path/to/bzImage MODULES=/path/to/lib/modules/<release>),
#                   and the uncompressed vmlinux QEMU boots through PVH, which
#                   skips the bzImage's self-decompression (2 s under TCG)
#   make image      build the initramfs images/out/initramfs.cpio
#                   (FAULTS=1: the faulty image too, as make image-faulty)
#   make images     the boot images, from the same kernel and initramfs:
#                   images/out/keepnet.img (GPT disk: BIOS and UEFI, USB
#                   sticks, disks, hypervisors), images/out/keepnet.iso
#                   (hybrid: CD and USB, BIOS and UEFI) and images/out/pxe/
#                   (network boot: iPXE script, dnsmasq example); GRUB,
#                   mtools, sfdisk and xorriso from Debian (images/bootimg)
#   make image-faulty  the faulty image images/out/initramfs-faulty.cpio, its
#                   components built with fault sites from
#                   images/out/faulty-src, the site list in
#                   images/out/sites.json (see kernel/fault)
#   make campaign   the standard fault-injection campaign (keepnet campaign,
#                   qemu/campaign): report in images/out/campaign/
#   make run        boot the appliance, status page on http://127.0.0.1:8080/
#   make test       unit tests, then the QEMU integration tests
#   make matrix     the QEMU tests repeated over every NIC model (also with
#                   --iommu: VFIO) and boot path (TestNICModels,
#                   TestNICModelsIOMMU, the image boots); .ci/run runs it
#                   after make test
#   make bench      benchmarks: channel messages/s across two processes, ping
#                   RTT and HTTP request rates (wrk on keep-alive connections,
#                   ab on one per request), bulk TCP (also per NIC model, with and without
#                   --iommu: VFIO against uio), forwarding through a firewall (A to B and
#                   B to A) and boot to ready of keepnet against the
#                   Linux stack in the same QEMU configuration, the recovery
#                   gap after each component's kill, the impairment relay's
#                   cost, TCP through 1% loss with RACK-TLP on, off and on
#                   Linux, the driver's ceiling (frames/s with no stack
#                   above it, keepnet.pktgen); the report goes to images/out/bench.md, a section
#                   each, plots beside it (KEEPNET_BENCH_OUT, _ROUNDS, _BYTES).
#                   Tests assert behaviour; durations are measured here.
#                   Bulk TCP with tcp's kept connections on and off
#                   (keepnet.keep=off), interleaved: scripts/keepbench.sh.
#                   Is a commit's bulk TCP slower than another's? Not from two
#                   runs of this: scripts/abbench.sh OLD [NEW] (interleaved).
#   make deps       install what is missing (QEMU, dnsmasq, curl, ssh, iproute2)

GO      ?= go
KDIR    := images/kernel
INITRD  := images/out/initramfs.cpio
FAULTY  := images/out/initramfs-faulty.cpio
RUNARGS ?= --net user --fwd tcp:8080:80

.PHONY: all kernel image images image-faulty run test matrix unit bench campaign deps clean FORCE

all: bin/keepnet bin/keepnet-relay

bin/keepnet: FORCE
	$(GO) build -o bin/keepnet ./cmd/keepnet

bin/keepnet-relay: FORCE
	$(GO) build -o bin/keepnet-relay ./cmd/keepnet-relay

bin/mkimage: FORCE
	$(GO) build -o bin/mkimage ./cmd/mkimage

bin/mkboot: FORCE
	$(GO) build -o bin/mkboot ./cmd/mkboot

kernel: $(KDIR)/vmlinux

# Not every kernel has a PVH entry; then keepnet boots the bzImage.
$(KDIR)/vmlinux: $(KDIR)/bzImage
	$(GO) run ./cmd/vmlinux $(KDIR)/bzImage $@ || echo "kernel: no PVH vmlinux; booting the bzImage"

ifdef KERNEL
$(KDIR)/bzImage: FORCE
	@test -f "$(KERNEL)" || { echo "KERNEL=$(KERNEL): no such file" >&2; exit 1; }
	@test -d "$(MODULES)/kernel" || { echo "MODULES=$(MODULES): want a lib/modules/<release> directory" >&2; exit 1; }
	rm -rf $(KDIR) && mkdir -p $(KDIR)/modules
	cp "$(KERNEL)" $(KDIR)/bzImage
	cp -r "$(MODULES)" $(KDIR)/modules/
	basename "$(MODULES)" > $(KDIR)/release
else
$(KDIR)/bzImage:
	kernel/fetch-debian.sh $(KDIR)
endif

image: bin/mkimage kernel $(if $(filter 1,$(FAULTS)),image-faulty)
	bin/mkimage -o $(INITRD)
	@ls -l $(INITRD) | awk '{printf "initramfs: %s (%.1f MiB)\n", $$NF, $$5/1048576}'

images: bin/mkboot image
	bin/mkboot
	@ls -l images/out/keepnet.img images/out/keepnet.iso | awk '{printf "boot image: %s (%.1f MiB)\n", $$NF, $$5/1048576}'

image-faulty: bin/mkimage kernel
	bin/mkimage -faults -o $(FAULTY)
	@ls -l $(FAULTY) | awk '{printf "initramfs: %s (%.1f MiB, with fault sites)\n", $$NF, $$5/1048576}'

run: deps all image
	bin/keepnet up $(RUNARGS)

# Unit tests run anywhere; the integration tests boot QEMU and need root
# (network namespaces, tap devices). KEEPNET_ITEST=1 makes them mandatory:
# under `make test` a missing prerequisite fails instead of skipping.
# MATRIX: the QEMU tests that repeat one check over every NIC model (with
# and without --iommu; TestChecksumOffloads: the offloads of the e1000 and
# the e1000e) and every boot path (the firmware boots take 20-60 s
# each under TCG), and the path tests that wait out a stalled peer or a
# 200 ms round trip (TestPMTUBlackHole: Linux's side stalls a minute;
# TestTCPInitialWindowRTT, TestIPv6Static: both stacks), and the 49
# restarts of TestRestartsFreeTheirPools (100 s). make test keeps
# TestDMAEscape (one --iommu boot). make test leaves them to make matrix,
# which .ci/run runs after it, so that make test stays under half an hour
# (28.5 min at f51724d with TestChecksumOffloads in it). (-skip is given to qemu/itest alone: with it,
# golang.org/x/net/nettest's conformance tests in servers/socket hang.)
MATRIX := ^(TestNICModels|TestNICModelsIOMMU|TestChecksumOffloads|TestBootDiskUEFI|TestBootDiskBIOS|TestBootISO|TestBootPXE|TestPMTUBlackHole|TestTCPInitialWindowRTT|TestIPv6Static|TestRestartsFreeTheirPools)$$

test: deps all image image-faulty
	scripts/hugepages.sh 16
	$(GO) vet ./...
	KEEPNET_ITEST=1 $(GO) test -count=1 -timeout 60m $$($(GO) list ./... | grep -v '/qemu/itest$$')
	KEEPNET_ITEST=1 $(GO) test -count=1 -timeout 60m -skip '$(MATRIX)' ./qemu/itest
	$(GO) test -race -count=1 -run 'RewrittenWhileParsed' ./servers/ip ./servers/tcp ./servers/udp

matrix: deps all image images
	scripts/hugepages.sh 16
	KEEPNET_ITEST=1 $(GO) test -count=1 -timeout 40m -run '$(MATRIX)' ./qemu/itest

unit:
	$(GO) test -count=1 ./...

bench: deps all image
	@KEEPNET_BENCH_DEPS=1 scripts/deps.sh
	scripts/hugepages.sh 16
	$(GO) test -run '^$$' -bench 'CrossProcess' -benchtime 2s ./kernel/channel
	KEEPNET_ITEST=1 $(GO) test -run '^$$' -bench '^BenchmarkTCPBulk$$' -benchtime 1x -timeout 30m ./qemu/itest
	KEEPNET_BENCH_IOMMU=$${KEEPNET_BENCH_IOMMU:-1} KEEPNET_ITEST=1 $(GO) test -run '^$$' -bench '^BenchmarkTCPBulkModels$$' -benchtime 1x -timeout 80m ./qemu/itest
	KEEPNET_ITEST=1 $(GO) test -run '^$$' -bench '^BenchmarkTCPBulkIPv6$$' -benchtime 1x -timeout 40m ./qemu/itest
	KEEPNET_ITEST=1 $(GO) test -run '^$$' -bench '^BenchmarkUDPRate$$' -benchtime 1x -timeout 30m ./qemu/itest
	KEEPNET_ITEST=1 $(GO) test -run '^$$' -bench '^BenchmarkRequestRates$$' -benchtime 1x -timeout 30m ./qemu/itest
	KEEPNET_ITEST=1 $(GO) test -run '^$$' -bench '^BenchmarkForward$$' -benchtime 1x -timeout 60m ./qemu/itest
	KEEPNET_ITEST=1 $(GO) test -run '^$$' -bench '^BenchmarkDriverCeiling$$' -benchtime 1x -timeout 30m ./qemu/itest
	KEEPNET_BENCH_OUT=$${KEEPNET_BENCH_OUT:-images/out/bench.md} KEEPNET_BENCH_ROUNDS=$${KEEPNET_BENCH_ROUNDS:-3} scripts/keepbench.sh
	KEEPNET_ITEST=1 $(GO) test -run '^$$' -bench '^BenchmarkBootToReady$$' -benchtime 1x -timeout 30m ./qemu/itest
	KEEPNET_ITEST=1 $(GO) test -run '^$$' -bench '^BenchmarkRecovery$$' -benchtime 1x -timeout 30m ./qemu/itest
	KEEPNET_ITEST=1 $(GO) test -run '^$$' -bench '^BenchmarkRelayCost$$' -benchtime 1x -timeout 30m ./qemu/itest
	KEEPNET_ITEST=1 $(GO) test -run '^$$' -bench '^BenchmarkTCPLossyRACK$$' -benchtime 1x -timeout 60m ./qemu/itest
	KEEPNET_ITEST=1 $(GO) test -run '^$$' -bench '^BenchmarkShortConnections$$' -benchtime 1x -timeout 60m ./qemu/itest

# The standard campaign (issue 13): fault sites of the types that crash or
# hang a component when reached, in the components' own code mostly, and
# 40% SIGKILL/SIGSTOP, round-robin over e1000.0, ip, pf, udp, tcp,
# syscall and store (booted with campaign.Rules, so that pf decides every
# packet). CAMPAIGN_ARGS adds to it or overrides it (--faults 60,
# --resume, --types ...).
CAMPAIGN_ARGS ?=
campaign: deps all image image-faulty
	bin/keepnet campaign --faults 240 --types panic,block,loop,zero,wrong-buffer --signals 0.4 --seed 1 $(CAMPAIGN_ARGS)

deps:
	@scripts/deps.sh

clean:
	rm -rf bin images/out
