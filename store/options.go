package store

import (
	"log/slog"
	"time"
)

// Options tunes [Open] and [NewMemory]. A nil *Options and every zero field
// mean the documented default.
type Options struct {
	// Now is the clock that stamps CreatedAt, UpdatedAt and event times.
	// Nil means time.Now.
	Now func() time.Time

	// Logger receives debug messages (migrations, busy retries) and a
	// warning when Open narrows the file's mode. Nil means silent.
	Logger *slog.Logger

	// BusyTimeout is how long one statement waits for another process's
	// write lock before SQLite reports SQLITE_BUSY. A call retries such
	// failures until BusyTimeout has passed since it began, or until its
	// ctx's deadline if that is later, and then fails with an error
	// matching agentlab.ErrBusy. Zero means 10 seconds. SQLite's own wait
	// does not watch ctx, so a call may outlast its ctx by up to this much.
	// SQLite only.
	BusyTimeout time.Duration

	// MaxReaders bounds the pool of read-only connections. Zero means 4.
	// Writes always go through one connection per Store. SQLite only.
	MaxReaders int

	// SyncFull selects synchronous=FULL: every commit is fsynced, so a
	// committed transaction also survives a power loss or kernel crash.
	// The default, synchronous=NORMAL in WAL mode, survives a crash of any
	// process but may lose the last commits on power loss; the Manager's
	// orphan sweep recovers a VM whose record was lost that way.
	// SQLite only.
	SyncFull bool
}

// withDefaults returns a copy of o with the zero fields set.
func (o *Options) withDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.BusyTimeout <= 0 {
		c.BusyTimeout = 10 * time.Second
	}
	if c.MaxReaders <= 0 {
		c.MaxReaders = 4
	}
	return c
}
