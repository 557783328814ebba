package agentlabtest

import (
	"github.com/agentlab-sdk/agentlab/store"
)

// NewStore returns an empty in-memory [agentlab.Store], the one of
// [store.NewMemory]: same semantics as the SQLite store, nothing on disk.
// It is safe for concurrent use; closing it is optional.
func NewStore() *store.Memory {
	return store.NewMemory(nil)
}
