package hub

import (
	"os"

	"keepnet/kernel/channel"
	"keepnet/kernel/keep"
	"keepnet/kernel/pool"
)

// ChannelSlots is the size of every channel's rings.
const ChannelSlots = 1024

// Shared is the real Factory: channels from kernel/channel, pools (huge pages
// where reserved) from kernel/pool, kept memory from kernel/keep.
func Shared() Factory {
	return Factory{
		Channel: func() ([]*os.File, error) {
			p, err := channel.New(ChannelSlots)
			if err != nil {
				return nil, err
			}
			return []*os.File{p.Mem, p.WakeA, p.WakeB}, nil
		},
		Pool: func(name string, id uint32, bufs, bufSize int) (Pool, error) {
			return pool.CreateNamed("keepnet:"+name, id, bufs, bufSize)
		},
		Kept: func(name string, size int) (*os.File, error) {
			return keep.Create("keepnet:"+name, size)
		},
	}
}
