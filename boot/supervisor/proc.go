package supervisor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// What /proc says of a silent process, to tell a hung one from one the
// machine is too busy to run.

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTick = 10 * time.Millisecond

// cpuTime is the processor time (user and system, all threads) pid has
// used, or -1 if it cannot be read.
func cpuTime(pid int) time.Duration {
	f := statFields(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if len(f) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(utime+stime) * clockTick
}

// threadStates is the state letter (R, S, D, T...) of each thread of pid.
func threadStates(pid int) []byte {
	tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "stat"))
	var states []byte
	for _, t := range tasks {
		if f := statFields(t); len(f) > 0 && len(f[0]) > 0 {
			states = append(states, f[0][0])
		}
	}
	return states
}

// statFields are the fields of a /proc stat file after the command name
// (which may hold blanks): f[0] is the state, field 3.
func statFields(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// starved reports whether a process silent for silence, which had used
// cpuThen when it last showed life, is waiting for a processor rather than
// hung: a thread of it is runnable and it got almost no processor time
// meanwhile. A spinning process gets its share of time; a deadlocked or
// blocked one has no runnable thread; a stopped one's threads are T.
func starved(pid int, silence, cpuThen time.Duration) bool {
	if cpuThen < 0 {
		return false
	}
	now := cpuTime(pid)
	if now < 0 || now-cpuThen >= silence/20 {
		return false
	}
	for _, s := range threadStates(pid) {
		if s == 'R' {
			return true
		}
	}
	return false
}
