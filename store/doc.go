// Package store implements [agentlab.Store]: [SQLite] keeps sandboxes,
// jobs and events in one SQLite file that several processes may share, and
// [Memory] keeps them in process memory with the same semantics, for
// tests. Both pass agentlabtest.RunStoreTests.
//
// # Choosing a store
//
// Use [Open] for anything that must survive the process: the Manager, the
// CLI, a test that restarts a Manager. Use [NewMemory] (or
// agentlabtest.NewStore) for fast tests that need no file.
//
// # Concurrency
//
// Every method of both stores is safe for concurrent use. [SQLite] is also
// safe across processes on one host: every write runs in a BEGIN IMMEDIATE
// transaction (the write lock is taken at the start, so a read-then-write
// never fails to upgrade), UpdateSandbox and UpdateJob read, modify and
// write the row inside that transaction, and a VMID is reserved by the
// unique insert of CreateSandbox. A process waits up to
// [Options.BusyTimeout] for another one's lock and then retries until the
// same timeout or ctx ends; the result is an error matching
// [agentlab.ErrBusy]. Within one process, writes queue on a single
// connection (where ctx is honored); reads use a bounded pool of read-only
// connections and never wait for writers (WAL mode).
//
// Update functions run inside the transaction or under the mutex: they
// must be quick, free of side effects (SQLite may run one again after
// SQLITE_BUSY, or when another handle changed the row since this one last
// wrote it) and must not call the store, which would deadlock. A handle
// remembers the live rows it wrote last and updates them without reading
// them first; the UPDATE names the version it expects, so a row another
// handle or process changed meanwhile is read again, never overwritten.
//
// # Durability
//
// The database is in WAL mode with synchronous=NORMAL: a committed
// transaction survives a crash of any process (kill -9 included), but the
// last commits before a power loss or kernel crash may be lost. The
// Manager's reconcile sweep adopts or removes a VM whose record was lost
// that way. Set [Options.SyncFull] to fsync every commit instead. The file
// and its -wal and -shm companions have mode 0600. Keep the file on a
// local filesystem (WAL does not work over a network filesystem), copy it
// only with the SQLite backup API or VACUUM INTO, and delete the -wal and
// -shm files together with it.
//
// # Schema and migrations
//
// The schema is a sequence of numbered SQL files embedded in the binary
// and applied in order, each in its own transaction, recorded in the
// schema_migrations table. Migrations only move forward; [Open] refuses a
// file written by a newer version with [agentlab.ErrUnsupported]. Two
// processes opening a fresh file at once apply each migration once.
//
// Destroyed sandboxes stay as history rows: a VMID and a non-empty name
// are unique among live (not DESTROYED) rows only, so CreateSandbox may
// reuse a destroyed VMID. GetSandbox, GetSandboxByName and UpdateSandbox
// act on the live row, else on the most recently created destroyed one.
// ListSandboxes returns history rows too unless its States filter excludes
// DESTROYED. Event IDs come from an AUTOINCREMENT key: they only grow,
// across processes, and are never reused.
//
// # Encoding
//
// Times are stored as unix nanoseconds, so a time round-trips to an equal
// instant (time.Time.Equal), returned in UTC; the zero time is stored as
// NULL and stays zero; times before 1678 or after 2261 are refused with
// [agentlab.ErrInvalidArgument]. Durations are nanoseconds. Labels,
// environments, lists and results are JSON; a nil map or slice stays nil
// and an empty one stays empty. Event data is JSON too, so numbers come
// back as float64 (the memory store does the same).
//
// # Errors
//
// One function translates SQLite errors: a live VMID taken matches
// [agentlab.ErrVMIDConflict] (and [agentlab.ErrAlreadyExists]), a live
// name or a job ID taken matches [agentlab.ErrAlreadyExists], a missing
// row matches [agentlab.ErrNotFound], a call after Close matches
// [agentlab.ErrClosed]. Errors are wrapped with the operation ("create
// sandbox 1065: ..."). The error returned by an update function is
// returned unchanged, so that errors.As on the caller's types works.
package store
