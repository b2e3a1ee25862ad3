package itest

import (
	"hash"
	"io"
	"os"

	"keepnet/apps/splitmix"
)

// writeSplitmix writes n bytes of the splitmix64 stream from seed to path,
// hashing them on the way.
func writeSplitmix(path string, seed uint64, n int64, h hash.Hash) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(splitmix.New(seed), n))
	return err
}
