package socket_test

import (
	"keepnet/apps/netapi"
	"keepnet/servers/socket"
)

// *Stack is what keepnet's apps are handed (apps/netapi).
var _ netapi.Network = (*socket.Stack)(nil)
