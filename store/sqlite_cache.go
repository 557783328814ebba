package store

import (
	"sync"

	"github.com/agentlab-sdk/agentlab"
)

// maxCachedRows bounds the rows a rowCache keeps; past it, new rows are
// not kept and their updates read the row as before.
const maxCachedRows = 4096

// rowCache keeps the row this handle last wrote for each live sandbox: its
// row id, the record and its column values. An update then writes without
// reading the row first, guarded by the version it remembers: when another
// handle or process changed the row since, the guarded UPDATE matches
// nothing, and the update reads the row and runs its function again.
//
// Only live rows are kept. A VMID has at most one live row, so a kept row
// is the one an update must act on, unless it changed since, which the
// version guard sees (destroying it, in any process, bumps its version).
type rowCache struct {
	mu   sync.Mutex
	rows map[int]cachedRow
}

// cachedRow is a sandbox row as stored: id, record and sandboxArgs values.
type cachedRow struct {
	id   int64
	rec  agentlab.SandboxRecord
	args []any
}

func newRowCache() *rowCache { return &rowCache{rows: map[int]cachedRow{}} }

// get returns the kept row of vmid. Its record must not be changed.
func (c *rowCache) get(vmid int) (cachedRow, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	row, ok := c.rows[vmid]
	return row, ok
}

// put keeps row, which was just committed, or forgets its VMID when the
// row is no longer live.
func (c *rowCache) put(row cachedRow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	vmid := row.rec.VMID
	_, have := c.rows[vmid]
	switch {
	case row.rec.State == agentlab.StateDestroyed:
		delete(c.rows, vmid)
	case have || len(c.rows) < maxCachedRows:
		row.rec = row.rec.Clone()
		c.rows[vmid] = row
	}
}

// drop forgets vmid's row.
func (c *rowCache) drop(vmid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.rows, vmid)
}
