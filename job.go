package agentlab

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// JobStatus is a job's status.
type JobStatus string

// Job statuses. QUEUED and RUNNING are live; the others are terminal.
const (
	JobQueued    JobStatus = "QUEUED"
	JobRunning   JobStatus = "RUNNING"
	JobCompleted JobStatus = "COMPLETED"
	JobFailed    JobStatus = "FAILED"
	JobTimeout   JobStatus = "TIMEOUT"
	JobCanceled  JobStatus = "CANCELED"
)

// Terminal reports whether s is a final status.
func (s JobStatus) Terminal() bool {
	return s != JobQueued && s != JobRunning
}

// Artifact is a file a job produced and the SDK downloaded.
type Artifact struct {
	Name   string // path relative to the job's artifact directory
	Path   string // local path of the downloaded copy
	Size   int64
	SHA256 string // hex
}

// JobRecord is the durable state of one job. Secrets are never part of it.
type JobRecord struct {
	ID        string // "job_" and 16 hex digits
	RepoURL   string
	Ref       string
	Task      string
	Profile   string
	Mode      string
	Command   string // overrides the profile's job command when not empty
	Env       map[string]string
	Artifacts []string // guest paths to collect
	TTL       time.Duration
	Timeout   time.Duration // the job's deadline from its start; zero: none
	Keepalive bool

	// SecretNames lists the names of the secrets delivered, never values.
	SecretNames []string

	Status   JobStatus
	VMID     int
	ExitCode int
	Message  string
	Results  []Artifact

	CreatedAt   time.Time
	StartedAt   time.Time
	CompletedAt time.Time
	UpdatedAt   time.Time

	// Deadline is when the job times out; zero means no deadline.
	Deadline time.Time

	// Runner identifies the Manager instance following the job and
	// Heartbeat when it last said so; a new Manager re-attaches to a RUNNING
	// job whose heartbeat is stale.
	Runner    string
	Heartbeat time.Time

	// GuestDir is the job's directory in the guest (task, log, exit code).
	GuestDir string

	// LogOffset is how many bytes of the guest log were already published.
	LogOffset int64

	Version int64
}

// JobFilter selects jobs in [Store.ListJobs]. Zero fields select all.
type JobFilter struct {
	Statuses []JobStatus
	VMID     int
	Limit    int
}

// NewJobID returns a fresh job ID: "job_" and 16 hex digits.
func NewJobID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "job_" + hex.EncodeToString(b[:])
}

// JobSpec describes a job: a task run against a repository in a fresh
// sandbox. Profile and Task are required.
type JobSpec struct {
	RepoURL string // cloned into the work directory; empty skips the clone
	Ref     string // branch, tag or commit; empty means the default branch
	Task    string // delivered as a file, $AGENTLAB_TASK_FILE
	Profile string

	// TTL is the sandbox's lease, as in CreateRequest.
	TTL time.Duration

	// Timeout is the job's deadline from its start; zero means none (the
	// lease still bounds it). A job past its deadline ends TIMEOUT.
	Timeout time.Duration

	// Keepalive keeps the sandbox after the job ends; nil takes the
	// profile's default.
	Keepalive *bool

	Mode string            // handed to the agent as $AGENTLAB_JOB_MODE
	Env  map[string]string // extra environment

	// Secrets are delivered as files readable only by the guest user and
	// exported as environment variables, then removed when the job ends.
	// They are never written to the Store, events or logs.
	Secrets map[string]string

	// Artifacts are guest paths (relative to the work directory) collected
	// when the job ends, in addition to the profile's.
	Artifacts []string

	// Command overrides the profile's job command.
	Command string
}
