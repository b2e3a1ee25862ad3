package itest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"keepnet/drivers/nic"
	"keepnet/qemu/report"
)

// The driver's frame generator (keepnet.pktgen, drivers/nic's pktgen.go)
// seen from the host: the appliance boots with it on, the first driver
// sends frames for the window before it serves, and a helper in the
// namespace counts them as they come out of the tap and, if asked, floods
// the guest meanwhile so that the driver counts what it receives.

// ceilingMAC is the appliance's NIC address in these runs, given to
// `keepnet up --mac`: the flood is addressed to it (the appliance answers
// no ARP while its driver generates).
const ceilingMAC = "52:54:00:12:34:56"

// floodType is the EtherType of the host's flood: IEEE 802's local
// experimental EtherType 2, beside the generator's 1, so that the helper's
// count of the guest's frames never counts its own (a packet socket sees
// outgoing frames too).
const floodType = 0x88B6

// floodPause is how long the flood waits after the tap refused a frame.
const floodPause = 200 * time.Microsecond

// ceilingSettle is how long the helper keeps counting after the window:
// the driver waits up to a second for its last frames.
const ceilingSettle = 2 * time.Second

// TestHelperCeiling is not a test of its own: the driver ceiling's runs
// start the test binary inside their namespace with CEILING_* set, before
// the appliance boots. It waits (CEILING_WAIT at most) for the generator's
// first frame on the tap, then, with CEILING_FLOOD=1, sends minimum-size
// frames to the appliance as fast as the tap takes them for the window
// (CEILING_SECONDS); it counts every frame of the generator's EtherType the
// tap passes up until the window and ceilingSettle are over, and prints one
// "result:" line.
func TestHelperCeiling(t *testing.T) {
	iface := os.Getenv("CEILING_IFACE")
	if iface == "" {
		return // run only as the helper
	}
	guest, err := net.ParseMAC(os.Getenv("CEILING_DST_MAC"))
	if err != nil {
		t.Fatal(err)
	}
	window, err := time.ParseDuration(os.Getenv("CEILING_SECONDS") + "s")
	if err != nil {
		t.Fatal(err)
	}
	wait, err := time.ParseDuration(os.Getenv("CEILING_WAIT"))
	if err != nil {
		t.Fatal(err)
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	counter, err := packetSocket(ifi.Index, nic.PktGenType)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(counter)
	// A small receive buffer: the counter reads only the first frame, and
	// the kernel counts the others as it drops them, which costs little.
	unix.SetsockoptInt(counter, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
	tv := unix.NsecToTimeval(wait.Nanoseconds())
	if err := unix.SetsockoptTimeval(counter, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, _, err := unix.Recvfrom(counter, buf, 0)
	if err != nil {
		t.Fatalf("no frame from the generator within %v: %v", wait, err)
	}
	first := time.Now()
	if n < 60 || string(buf[14:18]) != nic.PktGenMagic {
		t.Fatalf("the first frame of EtherType %#x is not the generator's: % x", nic.PktGenType, buf[:n])
	}
	var f floodCount
	if os.Getenv("CEILING_FLOOD") == "1" {
		// QEMU's e1000 takes no frame in the first second of the window
		// (its receive pause after the first RCTL write): refusals after
		// that mean the guest, not the sender, set the pace.
		f, err = flood(ifi, guest, first.Add(window), first.Add(1500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
	}
	flooded := time.Since(first)
	time.Sleep(time.Until(first.Add(window + ceilingSettle)))
	st, err := unix.GetsockoptTpacketStats(counter, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("result: seen=%d sent=%d refused=%d refused_late=%d flood_seconds=%.3f\n", st.Packets, f.sent, f.refused, f.refusedLate, flooded.Seconds())
}

// packetSocket is a raw packet socket on interface index for frames of
// EtherType proto (0: none, for sending).
func packetSocket(index int, proto uint16) (int, error) {
	be := int(htons(proto))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, be)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: index}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// flood sends minimum-size frames of floodType to guest on ifi until
// deadline, as fast as the tap takes them, bypassing the queueing
// discipline. It counts the frames the tap took and its refusals (ENOBUFS:
// its queue to QEMU was full; it counts them in tx_dropped too), those
// after late apart.
//
// A refusal pauses the sender for floodPause: the tap's queue holds a
// thousand frames, enough for far longer than that at any rate QEMU
// reads it, so the guest always has frames waiting, and the sender does
// not take a host CPU from QEMU retrying into a full queue (on a 2-CPU
// host, a sender that never paused cut the guest's receive rate several
// times over).
func flood(ifi *net.Interface, guest net.HardwareAddr, deadline, late time.Time) (c floodCount, err error) {
	fd, err := packetSocket(ifi.Index, floodType)
	if err != nil {
		return c, err
	}
	defer unix.Close(fd)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) // it never reads
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
		return c, err
	}
	frame := make([]byte, nic.MinFrame)
	copy(frame[0:6], guest)
	copy(frame[6:12], ifi.HardwareAddr)
	binary.BigEndian.PutUint16(frame[12:14], floodType)
	batch := newFrameBatch(frame, floodBatch)
	for now := time.Now(); now.Before(deadline); now = time.Now() {
		// sendmmsg stops at the first frame the tap refuses; the next call
		// reports why.
		n, err := batch.send(fd, floodBatch)
		c.sent += uint64(n)
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.EAGAIN):
			c.refused++
			if now.After(late) {
				c.refusedLate++
			}
			time.Sleep(floodPause)
		default:
			return c, fmt.Errorf("flood: %w", err)
		}
	}
	return c, nil
}

// floodCount is what a flood did.
type floodCount struct {
	sent, refused, refusedLate uint64
}

// floodBatch is how many frames the flood hands the kernel per system
// call.
const floodBatch = 64

// ceilingResult is one boot with the generator on.
type ceilingResult struct {
	gen          nic.PktGen // what the driver published
	hostSeen     float64    // generator frames the host's packet socket counted
	tapRx        float64    // the tap's rx_packets when the appliance was ready
	sent         float64    // frames of the host's flood the tap took (with flood)
	refused      float64    // times the tap refused the flood: its queue to QEMU was full
	refusedLate  float64    // of those, after the device's receive pause
	floodSeconds float64
	cfg          qemuConfig
	a            *appliance
	n            *netns
}

// ceilingRun boots the keepnet stack in a fresh namespace with the
// generator on for seconds, frames of size bytes (receiving only, with
// rxOnly), the helper counting (and with flood, flooding) from before the
// boot; it returns once the driver has published its result, the
// appliance serving.
func ceilingRun(t testing.TB, seconds, size int, rxOnly, flood bool) ceilingResult {
	t.Helper()
	n := newNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootWait+time.Minute)
	defer cancel()
	self, _ := os.Executable()
	type helperOut struct {
		out []byte
		err error
	}
	done := make(chan helperOut, 1)
	floodFlag := "0"
	if flood {
		floodFlag = "1"
	}
	go func() {
		out, err := n.exec(ctx, nil, "env", "CEILING_IFACE="+n.Tap, "CEILING_DST_MAC="+ceilingMAC,
			"CEILING_SECONDS="+strconv.Itoa(seconds), "CEILING_WAIT="+bootWait.String(), "CEILING_FLOOD="+floodFlag,
			self, "-test.run=^TestHelperCeiling$", "-test.v")
		done <- helperOut{out, err}
	}()
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet", "--mac", ceilingMAC,
		"--append", pktgenParam(seconds, size, rxOnly))...)
	// Read at once: after the window only ip's few frames (ARP, the
	// resolver's queries) add to it.
	r := ceilingResult{tapRx: n.tapCounter(t, "rx_packets"), cfg: readQEMUConfig(t, a), a: a, n: n}
	var h helperOut
	select {
	case h = <-done:
	case <-time.After(time.Duration(seconds)*time.Second + ceilingSettle + time.Minute):
		t.Fatal("the ceiling helper did not end")
	}
	line := lastLine(string(h.out), "result:")
	if h.err != nil || line == "" {
		t.Fatalf("ceiling helper: %v\n%s", h.err, h.out)
	}
	res := map[string]string{}
	for _, f := range strings.Fields(strings.TrimPrefix(line, "result:")) {
		k, v, _ := strings.Cut(f, "=")
		res[k] = v
	}
	r.hostSeen, _ = strconv.ParseFloat(res["seen"], 64)
	r.sent, _ = strconv.ParseFloat(res["sent"], 64)
	r.refused, _ = strconv.ParseFloat(res["refused"], 64)
	r.refusedLate, _ = strconv.ParseFloat(res["refused_late"], 64)
	r.floodSeconds, _ = strconv.ParseFloat(res["flood_seconds"], 64)
	stats := a.waitStats("e1000.0", func(m map[string]any) bool { return m["PktGen"] != nil })
	raw, _ := json.Marshal(stats["PktGen"])
	if err := json.Unmarshal(raw, &r.gen); err != nil || r.gen.Seconds == 0 {
		t.Fatalf("e1000.0 published no generator result: %v (%s)", err, raw)
	}
	return r
}

// pktgenParam is the kernel parameter that starts the generator.
func pktgenParam(seconds, size int, rxOnly bool) string {
	p := fmt.Sprintf("keepnet.pktgen=%d,size=%d", seconds, size)
	if rxOnly {
		p += ",tx=off"
	}
	return p
}

// tapCounter reads one of the tap's statistics.
func (n *netns) tapCounter(t testing.TB, name string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.exec(ctx, nil, "cat", "/sys/class/net/"+n.Tap+"/statistics/"+name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("tap %s %s %q: %v", n.Tap, name, out, err)
	}
	return v
}

// matches tells whether the host's count of the generator's frames agrees
// with the driver's: the tap passes up every frame the device sent, and at
// most a handful of ip's after the window.
func matches(driver, host float64) bool {
	return host >= driver && host <= driver+max(64, driver/100)
}

// The generator runs at boot: the driver sends frames for its window and
// counts the host's flood, the host sees as many frames as the driver
// says it sent, and then the appliance serves as usual. Behaviour only;
// BenchmarkDriverCeiling measures.
func TestDriverCeiling(t *testing.T) {
	requireITest(t, true)
	r := ceilingRun(t, 2, nic.MinFrame, false, true)
	g := r.gen
	t.Logf("driver: %v; host: %v generator frames seen, tap rx_packets %v; flood: the tap took %v frames in %.2f s, refused %v times (%v after the receive pause)",
		g, r.hostSeen, r.tapRx, r.sent, r.floodSeconds, r.refused, r.refusedLate)
	if g.TxFrames == 0 || g.Size != nic.MinFrame || g.TxBytes != g.TxFrames*uint64(g.Size) {
		t.Errorf("generator result %+v: want frames sent, of %d bytes", g, nic.MinFrame)
	}
	if g.Seconds < 2 || g.Seconds > 2+1.5 {
		t.Errorf("the generator ran %.2f s, want its 2 s window and at most a second's drain", g.Seconds)
	}
	if !matches(float64(g.TxFrames), r.tapRx) {
		t.Errorf("the driver sent %d frames, the tap's rx_packets is %v: want as many, and at most a few of ip's more", g.TxFrames, r.tapRx)
	}
	// The packet socket may count fewer: the host drops frames the tap
	// passes up faster than its backlog takes them (netdev_max_backlog).
	if r.hostSeen == 0 || r.hostSeen > float64(g.TxFrames) {
		t.Errorf("the host's packet socket counted %v of the generator's frames, the driver says it sent %d", r.hostSeen, g.TxFrames)
	}
	if g.RxFrames == 0 || float64(g.RxFrames) > r.sent {
		t.Errorf("the driver received %d frames of the %v the host's tap took: want some, and no more", g.RxFrames, r.sent)
	}
	if g.RxBad != 0 {
		t.Errorf("the driver received %d bad frames", g.RxBad)
	}
	// Then it serves: the rest of the boot went on.
	httpDownload(t, r.n, 1_000_000, 7, floorMbps)
	if s := r.n.ping(t, time.Minute, "-c", "5", "-i", "0.2", "-W", "5"); s.received != s.sent {
		t.Errorf("ping after the generator: %d/%d answered", s.received, s.sent)
	}
	for _, c := range r.a.status().Components {
		if c.State != "running" || c.Restarts != 0 {
			t.Errorf("after the generator %s = %+v, want running, never restarted", c.Name, c)
		}
	}
}

// ceilingSeconds is the generator's window in BenchmarkDriverCeiling.
const ceilingSeconds = 5

// ceilingRuns are the boots of one round of BenchmarkDriverCeiling, with
// the report's rows each fills.
var ceilingRuns = []struct {
	size          int
	rxOnly, flood bool
	rows          []string // the transmit rate, the host's count of it; or the receive rate, the flood's
}{
	{nic.MinFrame, false, false, []string{rowTx60, rowTx60Host}},
	{nic.MinFrame, true, true, []string{"", "", rowRx60, rowRx60Flood}},
	{nic.MinFrame, false, true, []string{rowTx60Both, "", rowRx60Both, ""}},
	{1514, false, false, []string{rowTx1514, rowTx1514Host}},
}

// The rows of the ceiling's report, and what each is.
const (
	rowTx60       = "transmit, 60-byte frames"
	rowTx60Host   = "transmit, 60-byte frames, as the host counted them"
	rowRx60       = "receive, 60-byte frames"
	rowRx60Flood  = "sent by the host's flood, 60-byte frames"
	rowTx60Both   = "transmit, 60-byte frames, while receiving a flood"
	rowRx60Both   = "receive, 60-byte frames, while transmitting"
	rowTx1514     = "transmit, 1514-byte frames"
	rowTx1514Host = "transmit, 1514-byte frames, as the host counted them"
)

var ceilingHow = map[string]string{
	rowTx60:       "frames the device reported sent over the generator's window (keepnet.pktgen)",
	rowTx60Host:   "the host's tap's rx_packets when the appliance was ready (the generator's frames and a few of ip's), over the driver's window",
	rowRx60:       "good frames the driver received per second (keepnet.pktgen=...,tx=off) while the host flooded it, over the time they came in",
	rowRx60Flood:  "frames the tap took from the host's raw socket for QEMU in the run above, over the flood (the device's second of receive pause included)",
	rowTx60Both:   "the generator transmitting while the host floods it",
	rowRx60Both:   "what the driver received in that window, over the time frames came in",
	rowTx1514:     "frames the device reported sent, 1514-byte frames",
	rowTx1514Host: "the host's tap's rx_packets, over the driver's window",
}

// BenchmarkDriverCeiling measures the emulated NIC's ceiling on this
// machine: the frames per second keepnet's driver alone moves with no
// stack above it (keepnet.pktgen), the figure against which every ratio of
// make bench reads. Each round boots four fresh guests, one at a time
// (ceilingRuns): the generator sending 60-byte frames; receiving only,
// while the host floods the guest with 60-byte frames; both at once; and
// sending 1514-byte frames. The host's tap counts the frames it passes up,
// as a check of the driver's count. Medians of KEEPNET_BENCH_ROUNDS rounds
// (default 3), section "ceiling" of the report.
func BenchmarkDriverCeiling(b *testing.B) {
	requireITest(b, true)
	rounds := int(envInts(b, "KEEPNET_BENCH_ROUNDS", 3)[0])
	out, load := benchOut(b), hostLoad()
	s := &report.Series{
		Title: "Driver ceiling: the emulated NIC with no stack above it (keepnet stack)", Unit: "frames/s", RowBy: "direction",
		Rows: []string{rowTx60, rowTx60Host, rowRx60, rowRx60Flood, rowTx60Both, rowRx60Both, rowTx1514, rowTx1514Host},
		How:  ceilingHow, Date: time.Now(), HostCPUs: runtime.NumCPU(),
	}
	var loads []string    // the host's, before each run
	var refusals []string // the tap's, in each flood
	for r := range rounds {
		for _, run := range ceilingRuns {
			sc := newScope(b)
			loads = append(loads, strings.Fields(hostLoad())[0])
			c := ceilingRun(sc, ceilingSeconds, run.size, run.rxOnly, run.flood)
			s.Accel, s.GuestCPUs = c.cfg.accel, atoi(c.cfg.smp)
			g := c.gen
			host := c.tapRx / g.Seconds
			fmt.Printf("round %d/%d, %d-byte frames, receive only %v, flood %v: %v; tap rx_packets %.0f (%.0f/s), packet socket %.0f; "+
				"flood: the tap took %.0f in %.2f s, refused %.0f times (%.0f after the receive pause)\n",
				r+1, rounds, run.size, run.rxOnly, run.flood, g, c.tapRx, host, c.hostSeen, c.sent, c.floodSeconds, c.refused, c.refusedLate)
			if g.TxFrames == 0 || !matches(float64(g.TxFrames), c.tapRx) {
				b.Errorf("round %d: the driver sent %d frames, the tap's rx_packets is %.0f", r+1, g.TxFrames, c.tapRx)
			}
			for i, v := range []float64{g.TxFPS, host, g.RxFPS, c.sent / c.floodSeconds} {
				if i < len(run.rows) && run.rows[i] != "" {
					s.Add(run.rows[i], v)
				}
			}
			if run.flood {
				refusals = append(refusals, fmt.Sprintf("%.0f (%.0f late)", c.refused, c.refusedLate))
			}
			sc.close()
		}
	}
	mbps := func(row string, size int) string {
		return fmt.Sprintf("%.1f Mbit/s", nic.Mbps(s.Median(row), size))
	}
	s.Notes = []string{
		fmt.Sprintf("In Mbit/s (frame and CRC, no preamble or gap), the medians are: transmit 60-byte %s, as the host counted %s; "+
			"receive 60-byte %s; transmit 1514-byte %s, as the host counted %s.",
			mbps(rowTx60, 60), mbps(rowTx60Host, 60), mbps(rowRx60, 60), mbps(rowTx1514, 1514), mbps(rowTx1514Host, 1514)),
		fmt.Sprintf("Each run boots a fresh guest on a tap device in a network namespace with keepnet.pktgen=%d: before it serves, "+
			"the driver e1000.0 sends frames to a nobody's address as fast as the transmit ring takes them for %d s "+
			"(one tail write per batch, completions reclaimed as they come), or with tx=off one frame only, and counts every frame it receives; "+
			"the window ends when the last frame queued came back. A helper in the namespace waits for the first frame, and in a "+
			"flood run sends 60-byte frames to the guest from a raw socket (sendmmsg, 64 a call) as fast as the tap takes them for the window, "+
			"pausing 200 µs when it refuses one (its queue to QEMU full); the tap's rx_packets is the host's count. "+
			"Receive rates are over the time frames came in: QEMU's e1000 takes no frame for a second after its receiver is first set up.",
			ceilingSeconds, ceilingSeconds),
		"Times the tap refused the flood, per flood run, and of those after that first second: " + strings.Join(refusals, ", ") +
			". Late refusals mean the guest set the receive pace; few or none mean the host's sender, sharing the two host CPUs with QEMU, " +
			"did: the receive figure is then a floor.",
		"The host has " + strconv.Itoa(runtime.NumCPU()) + " CPUs for QEMU's vCPUs and I/O thread and the flooding helper alike: " +
			"under TCG these figures are this machine's, not the device's, and they follow what else runs on it. Host load average when the bench started: " + load +
			"; over the last minute before each run: " + strings.Join(loads, ", ") + ".",
		"Measured by `make bench` (qemu/itest BenchmarkDriverCeiling).",
	}
	if err := s.Save(out, "ceiling"); err != nil {
		b.Fatal(err)
	}
	fmt.Println()
	s.Markdown(os.Stdout)
	fmt.Printf("\nreport %s\n", out)
	b.ReportMetric(s.Median(rowTx60), "tx60-frames/s")
	b.ReportMetric(s.Median(rowRx60), "rx60-frames/s")
	b.ReportMetric(s.Median(rowTx1514), "tx1514-frames/s")
	b.ReportMetric(0, "ns/op")
}
