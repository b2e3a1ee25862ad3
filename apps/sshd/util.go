package sshd

import (
	"encoding/pem"
	"slices"
)

func pemEncode(typ string, b []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}
