-- 0001: sandboxes, jobs and events.
--
-- Times are INTEGER unix nanoseconds, NULL for the zero time.time.Time.
-- Durations are INTEGER nanoseconds. Maps and lists are JSON text, NULL
-- for a nil map or slice.

CREATE TABLE sandboxes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    vmid           INTEGER NOT NULL,
    name           TEXT    NOT NULL DEFAULT '',
    profile        TEXT    NOT NULL DEFAULT '',
    state          TEXT    NOT NULL,
    node           TEXT    NOT NULL DEFAULT '',
    ip             TEXT    NOT NULL DEFAULT '',
    host_key       TEXT    NOT NULL DEFAULT '',
    network_mode   TEXT    NOT NULL DEFAULT '',
    labels         TEXT,
    login_user     TEXT    NOT NULL DEFAULT '',
    port           INTEGER NOT NULL DEFAULT 0,
    idle_stop      INTEGER NOT NULL DEFAULT 0,
    on_expiry      TEXT    NOT NULL DEFAULT '',
    keepalive      INTEGER NOT NULL DEFAULT 0,
    job_id         TEXT    NOT NULL DEFAULT '',
    lease_expires  INTEGER,
    last_activity  INTEGER,
    op             TEXT    NOT NULL DEFAULT '',
    op_started     INTEGER,
    clean_snapshot INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT    NOT NULL DEFAULT '',
    owner          TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER,
    updated_at     INTEGER,
    version        INTEGER NOT NULL DEFAULT 1
);

-- A VMID and a non-empty name are held by at most one live sandbox;
-- destroyed rows stay as history. SQLite checks the most recently created
-- index first, so the VMID index comes last: a row taking both a live
-- VMID and a live name reports the VMID conflict (TestConflictOrder).
CREATE UNIQUE INDEX sandboxes_live_name ON sandboxes (name)
    WHERE state != 'DESTROYED' AND name != '';
CREATE UNIQUE INDEX sandboxes_live_vmid ON sandboxes (vmid)
    WHERE state != 'DESTROYED';

CREATE INDEX sandboxes_vmid_id ON sandboxes (vmid, id);
CREATE INDEX sandboxes_name_id ON sandboxes (name, id);
CREATE INDEX sandboxes_state ON sandboxes (state, vmid);
CREATE INDEX sandboxes_profile ON sandboxes (profile, vmid);
CREATE INDEX sandboxes_job_id ON sandboxes (job_id);
CREATE INDEX sandboxes_ip ON sandboxes (ip);
CREATE INDEX sandboxes_lease_expires ON sandboxes (lease_expires)
    WHERE lease_expires IS NOT NULL;

CREATE TABLE jobs (
    id            TEXT    PRIMARY KEY,
    repo_url      TEXT    NOT NULL DEFAULT '',
    ref           TEXT    NOT NULL DEFAULT '',
    task          TEXT    NOT NULL DEFAULT '',
    profile       TEXT    NOT NULL DEFAULT '',
    mode          TEXT    NOT NULL DEFAULT '',
    command       TEXT    NOT NULL DEFAULT '',
    env           TEXT,
    artifacts     TEXT,
    ttl           INTEGER NOT NULL DEFAULT 0,
    keepalive     INTEGER NOT NULL DEFAULT 0,
    secret_names  TEXT,
    status        TEXT    NOT NULL DEFAULT '',
    vmid          INTEGER NOT NULL DEFAULT 0,
    exit_code     INTEGER NOT NULL DEFAULT 0,
    message       TEXT    NOT NULL DEFAULT '',
    results       TEXT,
    created_at    INTEGER,
    started_at    INTEGER,
    completed_at  INTEGER,
    updated_at    INTEGER,
    deadline      INTEGER,
    timeout       INTEGER NOT NULL DEFAULT 0,
    runner        TEXT    NOT NULL DEFAULT '',
    heartbeat     INTEGER,
    guest_dir     TEXT    NOT NULL DEFAULT '',
    log_offset    INTEGER NOT NULL DEFAULT 0,
    version       INTEGER NOT NULL DEFAULT 1
);

CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_status ON jobs (status);
CREATE INDEX jobs_vmid ON jobs (vmid);

-- AUTOINCREMENT: an ID is never reused, even after the newest row is
-- deleted, so replay from an ID never skips or repeats an event.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    ts             INTEGER,
    kind           TEXT    NOT NULL,
    vmid           INTEGER NOT NULL DEFAULT 0,
    job_id         TEXT    NOT NULL DEFAULT '',
    msg            TEXT    NOT NULL DEFAULT '',
    data           TEXT,
    schema_version INTEGER NOT NULL
);

CREATE INDEX events_vmid_id ON events (vmid, id);
CREATE INDEX events_job_id_id ON events (job_id, id);
CREATE INDEX events_kind_id ON events (kind, id);
