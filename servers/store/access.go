package store

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"golang.org/x/sys/unix"
)

// Access is who may read and write what. Without it (a Server made with
// no WithAccess) anyone may do anything, as in tests; in the appliance the
// store enforces:
//
//   - A caller is identified by the uid the kernel reports for its end of
//     the Unix socket (SO_PEERCRED), which it cannot forge, and named by
//     Names (kernel/sandbox's table).
//   - A component reads and writes its own namespace, the one named after
//     it, and nothing else: tcp cannot read ip's or sshd's pairs (sshd's
//     host key is a secret).
//   - In a Shared namespace ("stats") each component writes only the key
//     named after it, and everyone reads every key.
//   - Root (init) reads and writes everything, without quota.
//   - Everyone else may only say Hello.
//   - Each component's pairs (those of its namespace, and its keys in the
//     Shared ones) may cost at most QuotaBytes (entryCost) and number at
//     most QuotaKeys; a Put beyond either is refused with ErrFull.
type Access struct {
	Names      func(uid uint32) (name string, ok bool)
	Shared     []string
	QuotaBytes int64
	QuotaKeys  int
}

// ErrDenied refuses a request the caller may not make.
var ErrDenied = errors.New("access denied")

// caller is who sent a request.
type caller struct {
	uid   uint32
	known bool   // uid came from the kernel
	name  string // the component running as uid; "" if none
}

func (c caller) root() bool { return c.known && c.uid == 0 }

func (c caller) String() string {
	switch {
	case !c.known:
		return "an unidentified caller"
	case c.name != "":
		return c.name
	}
	return fmt.Sprintf("uid %d", c.uid)
}

// identify returns who is at the other end of conn.
func (a *Access) identify(conn net.Conn) caller {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return caller{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return caller{}
	}
	var (
		cred *unix.Ucred
		cerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return caller{}
	}
	c := caller{uid: cred.Uid, known: true}
	if a.Names != nil {
		c.name, _ = a.Names(cred.Uid)
	}
	return c
}

// check says whether c may make req.
func (a *Access) check(c caller, req *request) error {
	if req.op == opHello || c.root() {
		return nil
	}
	if c.name == "" {
		return fmt.Errorf("%w: %v is no component", ErrDenied, c)
	}
	if req.ns == c.name {
		return nil
	}
	if slices.Contains(a.Shared, req.ns) {
		switch {
		case req.op == opGet || req.op == opList:
			return nil
		case req.key == c.name:
			return nil
		}
		return fmt.Errorf("%w: %v writes only %s/%s", ErrDenied, c, req.ns, c.name)
	}
	return fmt.Errorf("%w: %v may not %v namespace %s", ErrDenied, c, req.op, req.ns)
}

// owner is the component a pair is charged to.
func (a *Access) owner(ns, key string) string {
	if slices.Contains(a.Shared, ns) {
		return key
	}
	return ns
}

// usage is what one component's pairs cost.
type usage struct {
	bytes int64
	keys  int
}

// overQuota says whether owner's usage u changed by dBytes and dKeys
// exceeds the quota.
func (a *Access) overQuota(owner string, u usage, dBytes int64, dKeys int) error {
	if dBytes > 0 && u.bytes+dBytes > a.QuotaBytes {
		return fmt.Errorf("%w: %s's quota is %d bytes, %d used, the pair needs %d more", ErrFull, owner, a.QuotaBytes, u.bytes, dBytes)
	}
	if dKeys > 0 && u.keys+dKeys > a.QuotaKeys {
		return fmt.Errorf("%w: %s's quota of %d keys is used up", ErrFull, owner, a.QuotaKeys)
	}
	return nil
}
