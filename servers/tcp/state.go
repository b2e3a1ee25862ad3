package tcp

// StateName is the memory init keeps for tcp across its restarts.
const StateName = "tcp.state"

// StateBytes is its size: room for every connection's buffers (the
// default BufferBudget) and their records.
const StateBytes = 192 << 20
