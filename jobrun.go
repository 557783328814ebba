package agentlab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Jobs
//
// RunJob records the job QUEUED and returns at once; a runner owned by the
// Manager then creates a sandbox bound to the job, delivers the task and
// secrets, starts the job command detached in the guest with its log and
// exit code written to files, follows the log into job.log events, and on
// exit downloads the artifacts, tears the sandbox down (unless keepalive)
// and records the result. The runner writes a heartbeat; when its process
// dies, a Manager opened later on the same Store re-attaches to the guest
// process through its files.

// Job is a handle on one job. It is safe for concurrent use.
type Job struct {
	m  *Manager
	id string

	mu  sync.Mutex // guards rec
	rec JobRecord

	cancel context.CancelCauseFunc // set when this process runs the job
	done   chan struct{}           // closed when this process's runner ends
}

// ID returns the job ID.
func (j *Job) ID() string { return j.id }

// Record returns the record as last read by this handle.
func (j *Job) Record() JobRecord {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rec
}

func (j *Job) set(rec JobRecord) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if rec.Version >= j.rec.Version {
		j.rec = rec
	}
}

// Refresh re-reads the job from the Store.
func (j *Job) Refresh(ctx context.Context) (JobRecord, error) {
	rec, err := j.m.store.GetJob(ctx, j.id)
	if err != nil {
		return rec, fmt.Errorf("get job %s: %w", j.id, err)
	}
	j.set(rec)
	return rec, nil
}

// Wait blocks until the job is terminal and returns its record. It works
// for jobs run by other processes too.
func (j *Job) Wait(ctx context.Context) (JobRecord, error) {
	for {
		rec, err := j.Refresh(ctx)
		if err != nil || rec.Status.Terminal() {
			return rec, err
		}
		if err := sleep(ctx, j.m.pollEvery()); err != nil {
			return rec, fmt.Errorf("wait for job %s: %w", j.id, err)
		}
	}
}

// Cancel stops the job: the guest process is killed, the sandbox torn down
// (unless keepalive) and the job ends CANCELED. Cancelling a terminal job
// does nothing. It works from any process sharing the Store.
func (j *Job) Cancel(ctx context.Context) error {
	rec, err := j.Refresh(ctx)
	if err != nil || rec.Status.Terminal() {
		return err
	}
	if j.m.cancelLocal(j.id) {
		_, err := j.Wait(ctx)
		return err
	}
	r := &runner{m: j.m, job: j}
	r.killGuest(ctx)
	r.finish(ctx, JobCanceled, -1, "canceled", false)
	return nil
}

// Artifacts returns the artifacts collected when the job ended.
func (j *Job) Artifacts() []Artifact { return j.Record().Results }

// OpenArtifact opens a collected artifact by name (as listed by
// [Job.Artifacts]) for reading. The caller closes it.
func (j *Job) OpenArtifact(name string) (*os.File, error) {
	for _, a := range j.Record().Results {
		if a.Name == name {
			f, err := os.Open(a.Path)
			if err != nil {
				return nil, fmt.Errorf("open artifact %s of job %s: %w", name, j.id, err)
			}
			return f, nil
		}
	}
	return nil, fmt.Errorf("artifact %s of job %s: %w", name, j.id, ErrNotFound)
}

// LogOptions tunes [Job.Logs].
type LogOptions struct {
	Tail   int  // only the last Tail lines; zero means all
	Follow bool // keep writing new lines until the job ends or ctx ends
}

// Logs writes the job's log lines to w: from the downloaded log once the
// job ended, else from its job.log events.
func (j *Job) Logs(ctx context.Context, w io.Writer, opts LogOptions) error {
	rec, err := j.Refresh(ctx)
	if err != nil {
		return err
	}
	if rec.Status.Terminal() {
		if p := logArtifact(rec); p != "" {
			return writeTail(w, p, opts.Tail)
		}
	}
	return j.logEvents(ctx, w, opts)
}

func logArtifact(rec JobRecord) string {
	for _, a := range rec.Results {
		if a.Name == jobLogName {
			return a.Path
		}
	}
	return ""
}

func writeTail(w io.Writer, file string, tail int) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read job log: %w", err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if tail > 0 && len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	_, err = io.WriteString(w, strings.Join(lines, ""))
	return err
}

func (j *Job) logEvents(ctx context.Context, w io.Writer, opts LogOptions) error {
	f := EventFilter{JobID: j.id, Kinds: []string{EventJobLog}, Limit: opts.Tail,
		Last: opts.Tail > 0}
	for {
		evs, err := j.m.store.ListEvents(ctx, f)
		if err != nil {
			return fmt.Errorf("read job log: %w", err)
		}
		for _, ev := range evs {
			fmt.Fprintln(w, ev.Message)
			f.AfterID = ev.ID
		}
		f.Limit, f.Last = 0, false
		if !opts.Follow {
			return nil
		}
		rec, err := j.Refresh(ctx)
		if err != nil || rec.Status.Terminal() && len(evs) == 0 {
			return err
		}
		if err := sleep(ctx, j.m.pollEvery()); err != nil {
			return nil
		}
	}
}

var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

func (s *JobSpec) validate() error {
	switch {
	case s.Profile == "":
		return fmt.Errorf("%w: job profile is required", ErrInvalidArgument)
	case strings.TrimSpace(s.Task) == "":
		return fmt.Errorf("%w: job task is required", ErrInvalidArgument)
	case len(s.Task) > 1<<20:
		return fmt.Errorf("%w: job task is larger than 1 MiB", ErrInvalidArgument)
	case s.Timeout < 0:
		return fmt.Errorf("%w: job timeout %v is negative", ErrInvalidArgument, s.Timeout)
	case s.TTL > 0 && s.TTL < time.Minute:
		return fmt.Errorf("%w: job ttl %v is shorter than a minute", ErrInvalidArgument, s.TTL)
	case strings.HasPrefix(s.RepoURL, "-") || strings.HasPrefix(s.Ref, "-"):
		return fmt.Errorf("%w: repository URL and ref must not start with -",
			ErrInvalidArgument)
	}
	for _, m := range []map[string]string{s.Env, s.Secrets} {
		for k := range m {
			if !envKeyRE.MatchString(k) {
				return fmt.Errorf("%w: environment or secret name %q", ErrInvalidArgument, k)
			}
		}
	}
	for _, a := range s.Artifacts {
		if err := checkArtifactPath(a); err != nil {
			return err
		}
	}
	return nil
}

// checkArtifactPath accepts a relative guest path inside the work
// directory that names something in it (not the directory itself) and does
// not land on the job log in the artifact directory.
func checkArtifactPath(p string) error {
	clean := path.Clean(p)
	if p == "" || path.IsAbs(clean) || clean == "." || clean == ".." ||
		strings.HasPrefix(clean, "../") {
		return fmt.Errorf("%w: artifact path %q must stay inside the work directory",
			ErrInvalidArgument, p)
	}
	if clean == jobLogName || strings.HasPrefix(clean, jobLogName+"/") {
		return fmt.Errorf("%w: artifact path %q would replace the job log",
			ErrInvalidArgument, p)
	}
	return nil
}

// RunJob validates spec, records the job QUEUED and starts it in the
// background. It returns at once; use [Job.Wait] to follow it.
func (m *Manager) RunJob(ctx context.Context, spec JobSpec) (*Job, error) {
	if err := m.checkOpen(); err != nil {
		return nil, err
	}
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("run job: %w", err)
	}
	prof, err := m.Profiles().Get(spec.Profile)
	if err != nil {
		return nil, fmt.Errorf("run job: %w", err)
	}
	rec := m.newJobRecord(&spec, &prof)
	if err := m.store.CreateJob(ctx, &rec); err != nil {
		return nil, fmt.Errorf("run job: %w", err)
	}
	m.emit(ctx, Event{Kind: EventJobCreated, JobID: rec.ID,
		Data: map[string]any{"profile": rec.Profile, "repo_url": rec.RepoURL}})
	j := &Job{m: m, id: rec.ID, rec: rec}
	m.startRunner(j, &spec, false)
	return j, nil
}

func (m *Manager) newJobRecord(spec *JobSpec, p *Profile) JobRecord {
	keep := p.Behavior.KeepaliveDefault
	if spec.Keepalive != nil {
		keep = *spec.Keepalive
	}
	mode := spec.Mode
	if mode == "" {
		mode = orString(p.Behavior.Mode, "dangerous")
	}
	names := make([]string, 0, len(spec.Secrets))
	for k := range spec.Secrets {
		names = append(names, k)
	}
	sort.Strings(names)
	return JobRecord{
		ID: NewJobID(), RepoURL: spec.RepoURL, Ref: spec.Ref, Task: spec.Task,
		Profile: spec.Profile, Mode: mode, Command: spec.Command, Env: spec.Env,
		Artifacts: append(append([]string(nil), p.Job.Artifacts...), spec.Artifacts...),
		TTL:       spec.TTL, Timeout: spec.Timeout, Keepalive: keep, SecretNames: names,
		Status: JobQueued,
		Runner: m.instance, Heartbeat: m.now(),
	}
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// GetJob returns a handle on a job.
func (m *Manager) GetJob(ctx context.Context, id string) (*Job, error) {
	rec, err := m.store.GetJob(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if j, ok := m.jobs[id]; ok {
		j.set(rec)
		return j, nil
	}
	return &Job{m: m, id: id, rec: rec}, nil
}

// ListJobs returns the jobs f selects, newest first.
func (m *Manager) ListJobs(ctx context.Context, f JobFilter) ([]JobRecord, error) {
	recs, err := m.store.ListJobs(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return recs, nil
}

func (m *Manager) pollEvery() time.Duration { return m.cfg.JobPollInterval }

// errCanceled is the cause given to a runner's context by Job.Cancel.
var errCanceled = errors.New("job canceled")

// errSandboxGone is the cause given when the job's sandbox went away.
var errSandboxGone = errors.New("sandbox gone")

// startRunner starts the goroutine that drives j. With attach, it follows a
// guest process started by an earlier runner instead of starting one.
func (m *Manager) startRunner(j *Job, spec *JobSpec, attach bool) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancelCause(m.ctx)
	j.cancel, j.done = cancel, make(chan struct{})
	m.jobs[j.id] = j
	m.mu.Unlock()
	m.goBackground(func(context.Context) {
		defer close(j.done)
		defer cancel(nil)
		defer m.forgetJob(j.id)
		r := &runner{m: m, job: j, spec: spec}
		if attach {
			r.reattach(ctx)
		} else {
			r.run(ctx)
		}
	})
}

func (m *Manager) forgetJob(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.jobs, id)
}

// cancelLocal cancels the job's runner if this process runs it.
func (m *Manager) cancelLocal(id string) bool {
	m.mu.Lock()
	j, ok := m.jobs[id]
	m.mu.Unlock()
	if ok {
		j.cancel(errCanceled)
	}
	return ok
}

// sandboxGone fails the live job bound to rec at once, with the reason.
func (m *Manager) sandboxGone(ctx context.Context, rec SandboxRecord, why string) {
	if rec.JobID == "" {
		return
	}
	m.mu.Lock()
	j, local := m.jobs[rec.JobID]
	m.mu.Unlock()
	if local {
		j.cancel(fmt.Errorf("%w: %s", errSandboxGone, why))
	}
	status := JobFailed
	if strings.Contains(why, "expired") {
		status = JobTimeout
	}
	r := &runner{m: m, job: &Job{m: m, id: rec.JobID}}
	r.setTerminal(ctx, status, -1, why)
}

// reconcileJobs fails live jobs whose sandbox is gone and re-attaches to
// jobs whose runner stopped sending heartbeats.
func (m *Manager) reconcileJobs(ctx context.Context, apply bool) []Finding {
	recs, err := m.store.ListJobs(ctx, JobFilter{Statuses: []JobStatus{JobQueued, JobRunning}})
	if err != nil {
		return nil
	}
	var out []Finding
	for _, rec := range recs {
		if f, ok := m.reconcileJob(ctx, rec, apply); ok {
			out = append(out, f)
		}
	}
	return out
}

func (m *Manager) reconcileJob(ctx context.Context, rec JobRecord, apply bool) (Finding, bool) {
	stale := m.now().Sub(rec.Heartbeat) > m.cfg.JobHeartbeatTimeout
	if !stale || !apply {
		return Finding{}, false
	}
	m.mu.Lock()
	_, local := m.jobs[rec.ID]
	m.mu.Unlock()
	if local {
		return Finding{}, false
	}
	// Claim the job so that only one Manager re-attaches.
	claimed, err := m.store.UpdateJob(ctx, rec.ID, func(r *JobRecord) error {
		if r.Status.Terminal() || m.now().Sub(r.Heartbeat) <= m.cfg.JobHeartbeatTimeout {
			return errNoop
		}
		r.Runner, r.Heartbeat = m.instance, m.now()
		return nil
	})
	if err != nil {
		return Finding{}, false
	}
	j := &Job{m: m, id: rec.ID, rec: claimed}
	m.startRunner(j, nil, true)
	return Finding{VMID: rec.VMID, Kind: FindingJobOrphaned,
		Detail: fmt.Sprintf("job %s had no live runner", rec.ID), Action: "re-attached"}, true
}

// runner drives one job.
type runner struct {
	m    *Manager
	job  *Job
	spec *JobSpec
	sb   *Sandbox
	beat time.Time
}

const jobLogName = "job.log"

func (r *runner) id() string { return r.job.id }

func (r *runner) step(ctx context.Context, name string) {
	r.m.emit(ctx, Event{Kind: EventJobStep, JobID: r.id(), VMID: r.job.Record().VMID,
		Data: map[string]any{"step": name}})
}

// run drives a new job from QUEUED to a terminal status.
func (r *runner) run(ctx context.Context) {
	rec := r.job.Record()
	stop := r.beatWhileProvisioning(ctx)
	err := r.provision(ctx, rec)
	stop()
	if err != nil {
		r.abort(ctx, err)
		return
	}
	if err := r.launch(ctx); err != nil {
		r.abort(ctx, err)
		return
	}
	r.follow(ctx)
}

// beatWhileProvisioning keeps the job's heartbeat fresh while its sandbox
// is created, which can take minutes, so that another Manager sharing the
// Store does not take the QUEUED job for abandoned. The returned func stops
// the beat and waits for it.
func (r *runner) beatWhileProvisioning(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		every := min(r.m.cfg.JobHeartbeatTimeout/4, r.m.pollEvery())
		for sleep(ctx, every) == nil {
			// Straight to the Store: the handle's copy belongs to provision.
			_, err := r.m.store.UpdateJob(ctx, r.id(), func(j *JobRecord) error {
				if j.Status.Terminal() {
					return errJobEnded
				}
				j.Heartbeat, j.Runner = r.m.now(), r.m.instance
				return nil
			})
			if err != nil {
				r.m.log.Debug("job heartbeat", "job_id", r.id(), "err", err)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// provision creates the sandbox bound to the job and marks it RUNNING.
func (r *runner) provision(ctx context.Context, rec JobRecord) error {
	r.step(ctx, "provision")
	keep := rec.Keepalive
	sb, err := r.m.Create(ctx, CreateRequest{Profile: rec.Profile, TTL: rec.TTL,
		Keepalive: &keep, JobID: rec.ID, Labels: map[string]string{"job": rec.ID}})
	if err != nil {
		return fmt.Errorf("provision sandbox: %w", err)
	}
	r.sb = sb
	now := r.m.now()
	var deadline time.Time
	if rec.Timeout > 0 {
		deadline = now.Add(rec.Timeout)
	}
	vmid := sb.VMID()
	rec, err = r.update(ctx, func(j *JobRecord) {
		j.Status, j.VMID, j.StartedAt, j.Deadline = JobRunning, vmid, now, deadline
		j.GuestDir = ".agentlab/jobs/" + j.ID
	})
	if err != nil {
		return err
	}
	r.m.emit(ctx, Event{Kind: EventJobRunning, JobID: rec.ID, VMID: vmid,
		Data: map[string]any{"sandbox_vmid": vmid}})
	return nil
}

// update applies fn to a live job; it fails with errJobEnded when the job
// already ended (cancelled or failed elsewhere).
func (r *runner) update(ctx context.Context, fn func(*JobRecord)) (JobRecord, error) {
	rec, err := r.m.store.UpdateJob(context.WithoutCancel(ctx), r.id(),
		func(j *JobRecord) error {
			if j.Status.Terminal() {
				return errJobEnded
			}
			fn(j)
			return nil
		})
	if err == nil {
		r.job.set(rec)
	}
	return rec, err
}

var errJobEnded = errors.New("job already ended")

// abort ends the job after a failure before or while it ran.
func (r *runner) abort(ctx context.Context, err error) {
	status, msg := JobFailed, err.Error()
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errCanceled):
		status, msg = JobCanceled, "canceled"
	case errors.Is(cause, errSandboxGone):
		msg = cause.Error()
	case ctx.Err() != nil:
		return // the Manager is closing; a later Manager re-attaches
	case r.pastDeadline(): // the guest did not answer in time
		status, msg = JobTimeout, "job deadline exceeded: "+msg
	}
	if why, gone := r.destroyedElsewhere(ctx); gone {
		r.awaitEnd(ctx, 30*time.Second)
		status, msg = JobFailed, why
	} else {
		r.killGuest(ctx)
	}
	r.finish(ctx, status, -1, msg, false)
}

// awaitEnd waits up to d for another process to record the job's end, so
// that its reason (an expired lease, a destroy) stands rather than ours.
func (r *runner) awaitEnd(ctx context.Context, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	defer cancel()
	for {
		if rec, err := r.job.Refresh(ctx); err != nil || rec.Status.Terminal() {
			return
		}
		if sleep(ctx, r.m.pollEvery()) != nil {
			return
		}
	}
}

// destroyedElsewhere reports whether the job's sandbox is being destroyed or
// is gone, typically by another process sharing the Store: the runner's own
// guest commands then fail first, and the destroy, not that failure, is the
// job's reason.
func (r *runner) destroyedElsewhere(ctx context.Context) (string, bool) {
	vmid := r.job.Record().VMID
	if vmid == 0 {
		return "", false
	}
	rec, err := r.m.store.GetSandbox(context.WithoutCancel(ctx), vmid)
	switch {
	case errors.Is(err, ErrNotFound), err == nil && rec.State == StateDestroyed:
		return "sandbox destroyed", true
	case err == nil && rec.Op == string(OpDestroy):
		return "sandbox destroyed", true
	}
	return "", false
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// launch delivers the task, secrets and run script, and starts the job
// command detached in the guest.
func (r *runner) launch(ctx context.Context) error {
	rec := r.job.Record()
	r.step(ctx, "deliver")
	d := shellQuote(rec.GuestDir)
	if err := r.write(ctx, rec.GuestDir+"/task", rec.Task); err != nil {
		return err
	}
	if err := r.write(ctx, rec.GuestDir+"/env", r.envFile(rec)); err != nil {
		return err
	}
	if r.spec != nil {
		for name, val := range r.spec.Secrets {
			if err := r.write(ctx, rec.GuestDir+"/secrets/"+name, val); err != nil {
				return err
			}
		}
	}
	if err := r.write(ctx, rec.GuestDir+"/run.sh", r.script(rec)); err != nil {
		return err
	}
	r.step(ctx, "start")
	start := "cd && setsid nohup sh " + d + "/run.sh </dev/null >/dev/null 2>&1 & " +
		"echo $! > " + d + "/pid"
	return r.mustExec(ctx, start, nil)
}

// write creates a guest file readable only by the guest user.
func (r *runner) write(ctx context.Context, file, content string) error {
	cmd := "umask 077 && mkdir -p " + shellQuote(path.Dir(file)) + " && cat > " +
		shellQuote(file)
	if err := r.mustExec(ctx, cmd, strings.NewReader(content)); err != nil {
		return fmt.Errorf("write %s: %w", path.Base(file), err)
	}
	return nil
}

// guestExecTimeout bounds each guest command of a job runner: a guest that
// takes a command and never answers (its connection kept alive) must not
// hold the job RUNNING forever, nor past its deadline.
const guestExecTimeout = time.Minute

// exec runs one runner command in the guest, within guestExecTimeout and
// no later than a second past the job's deadline.
func (r *runner) exec(ctx context.Context, req ExecRequest) (ExecResult, error) {
	d := guestExecTimeout
	if dl := r.job.Record().Deadline; !dl.IsZero() {
		d = min(d, max(dl.Sub(r.m.now()), 0)+time.Second)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return r.sb.Exec(ctx, req)
}

// pastDeadline reports whether the job has a deadline and it has passed.
func (r *runner) pastDeadline() bool {
	dl := r.job.Record().Deadline
	return !dl.IsZero() && !r.m.now().Before(dl)
}

func (r *runner) mustExec(ctx context.Context, cmd string, stdin io.Reader) error {
	res, err := r.exec(ctx, ExecRequest{Shell: cmd, Stdin: stdin})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("guest command exited %d: %s", res.ExitCode,
			strings.TrimSpace(string(res.Stderr)))
	}
	return nil
}

func (r *runner) envFile(rec JobRecord) string {
	var b strings.Builder
	keys := make([]string, 0, len(rec.Env))
	for k := range rec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(rec.Env[k]))
	}
	fmt.Fprintf(&b, "export AGENTLAB_JOB_ID=%s AGENTLAB_JOB_MODE=%s AGENTLAB_JOB_PROFILE=%s\n",
		shellQuote(rec.ID), shellQuote(rec.Mode), shellQuote(rec.Profile))
	return b.String()
}

// script is the detached job script: clone, run, record the exit code,
// remove the secrets and the task. Everything it prints goes to the log file.
func (r *runner) script(rec JobRecord) string {
	prof, _ := r.m.Profiles().Get(rec.Profile)
	cmd := orString(rec.Command, prof.Job.Command)
	if cmd == "" {
		cmd = defaultJobCommand
	}
	wd := orString(prof.Job.Workdir, "work")
	var b strings.Builder
	fmt.Fprintf(&b, "d=\"$HOME\"/%s\nwd=%s\nexec >>\"$d/log\" 2>&1\n", shellQuote(rec.GuestDir),
		shellQuote(wd))
	b.WriteString("fin() { rm -rf \"$d/secrets\" \"$d/task\"; echo \"$1\" >\"$d/exit.tmp\" && " +
		"mv \"$d/exit.tmp\" \"$d/exit\"; exit 0; }\ncd \"$HOME\" || fin 1\n")
	if rec.RepoURL != "" {
		fmt.Fprintf(&b, "git clone -q -- %s \"$wd\" || { echo 'agentlab: git clone failed'; "+
			"fin 1; }\n", shellQuote(rec.RepoURL))
		if rec.Ref != "" {
			fmt.Fprintf(&b, "(cd \"$wd\" && git checkout -q %s) || { echo 'agentlab: git "+
				"checkout failed'; fin 1; }\n", shellQuote(rec.Ref))
		}
	}
	b.WriteString("mkdir -p \"$wd\" && cd \"$wd\" || fin 1\n. \"$d/env\"\n" +
		"export AGENTLAB_TASK_FILE=\"$d/task\" AGENTLAB_SECRETS_DIR=\"$d/secrets\" " +
		"AGENTLAB_REPO_DIR=\"$HOME/$wd\"\n" +
		"for f in \"$d\"/secrets/*; do\n" +
		"  [ -f \"$f\" ] && export \"$(basename \"$f\")=$(cat \"$f\")\"\ndone\n")
	fmt.Fprintf(&b, "sh -c %s\nfin $?\n", shellQuote(cmd))
	return b.String()
}

// defaultJobCommand runs a coding agent CLI reading the task from a file,
// when neither the profile nor the spec names a command.
const defaultJobCommand = `claude -p --dangerously-skip-permissions "$(cat "$AGENTLAB_TASK_FILE")"`

// pollResult is what one look at the guest's job files found.
type pollResult struct {
	exited   bool
	code     int
	alive    bool
	log      []byte
	moreLogs bool
}

const logChunk = 64 << 10

// poll reads the exit file, whether the process lives, and new log bytes.
func (r *runner) poll(ctx context.Context, offset int64) (pollResult, error) {
	d := shellQuote(r.job.Record().GuestDir)
	// The exit file is checked again after the liveness probe: the process
	// may finish between the two.
	cmd := fmt.Sprintf("cd && if [ -f %[1]s/exit ]; then echo exit:$(cat %[1]s/exit); "+
		"elif kill -0 $(cat %[1]s/pid 2>/dev/null) 2>/dev/null; then echo alive; "+
		"elif [ -f %[1]s/exit ]; then echo exit:$(cat %[1]s/exit); "+
		"else echo gone; fi; tail -c +%[2]d %[1]s/log 2>/dev/null | head -c %[3]d",
		d, offset+1, logChunk)
	res, err := r.exec(ctx, ExecRequest{Shell: cmd, MaxOutput: logChunk + 256})
	if err != nil {
		return pollResult{}, err
	}
	head, rest, _ := bytes.Cut(res.Stdout, []byte("\n"))
	var p pollResult
	switch h := string(head); {
	case strings.HasPrefix(h, "exit:"):
		p.exited, p.alive = true, true
		p.code, err = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(h, "exit:")))
		if err != nil {
			p.code = -1
		}
	case h == "alive":
		p.alive = true
	}
	p.log, p.moreLogs = rest, len(rest) >= logChunk
	return p, nil
}

// follow waits for the guest process, publishing its log, until it exits,
// the deadline passes, or the job is cancelled.
func (r *runner) follow(ctx context.Context) {
	r.step(ctx, "run")
	offset := r.job.Record().LogOffset
	var partial []byte
	for {
		p, err := r.poll(ctx, offset)
		if err != nil {
			r.abort(ctx, fmt.Errorf("follow job: %w", err))
			return
		}
		offset += int64(len(p.log))
		partial = r.publish(ctx, append(partial, p.log...), p.exited && !p.moreLogs)
		r.heartbeat(ctx, offset)
		if p.moreLogs {
			continue
		}
		if done := r.check(ctx, p); done {
			return
		}
		if err := sleep(ctx, r.m.pollEvery()); err != nil {
			r.abort(ctx, err)
			return
		}
	}
}

// check ends the job when the process exited, vanished or ran past its
// deadline. It reports whether the job ended.
func (r *runner) check(ctx context.Context, p pollResult) bool {
	rec := r.job.Record()
	switch {
	case p.exited:
		r.complete(ctx, p.code)
	case !p.alive:
		r.finish(ctx, JobFailed, -1, "guest process is gone (the guest restarted?)", true)
	case !rec.Deadline.IsZero() && !r.m.now().Before(rec.Deadline):
		r.killGuest(ctx)
		r.finish(ctx, JobTimeout, 124, "job deadline exceeded", true)
	default:
		return false
	}
	return true
}

func (r *runner) complete(ctx context.Context, code int) {
	switch code {
	case 0:
		r.finish(ctx, JobCompleted, 0, "job completed", true)
	case 124:
		r.finish(ctx, JobTimeout, code, "job command timed out (exit 124)", true)
	default:
		r.finish(ctx, JobFailed, code, fmt.Sprintf("job command exited %d", code), true)
	}
}

// maxLogEvents bounds the job.log events of one job; the full log is kept
// as an artifact.
const maxLogEvents = 2000

// publish emits complete lines as job.log events and returns the unfinished
// tail. With flush, the tail is published too.
func (r *runner) publish(ctx context.Context, buf []byte, flush bool) []byte {
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		r.logLine(ctx, string(buf[:i]))
		buf = buf[i+1:]
	}
	if flush && len(buf) > 0 {
		r.logLine(ctx, string(buf))
		buf = nil
	}
	if len(buf) > 4096 {
		r.logLine(ctx, string(buf))
		buf = nil
	}
	return buf
}

func (r *runner) logLine(ctx context.Context, line string) {
	r.m.mu.Lock()
	n := r.m.logCount[r.id()]
	r.m.logCount[r.id()] = n + 1
	r.m.mu.Unlock()
	if n >= maxLogEvents {
		return
	}
	if len(line) > 1000 {
		line = line[:1000] + "…"
	}
	r.m.emit(ctx, Event{Kind: EventJobLog, JobID: r.id(), VMID: r.job.Record().VMID,
		Message: line, Data: map[string]any{"line": line}})
}

// heartbeat records that this runner is alive, every few seconds.
func (r *runner) heartbeat(ctx context.Context, offset int64) {
	now := r.m.now()
	if now.Sub(r.beat) < r.m.cfg.JobHeartbeatTimeout/4 {
		return
	}
	r.beat = now
	if _, err := r.update(ctx, func(j *JobRecord) {
		j.Heartbeat, j.Runner, j.LogOffset = now, r.m.instance, offset
	}); err != nil {
		r.m.log.Debug("job heartbeat", "job_id", r.id(), "err", err)
	}
}

// reattach follows a job whose earlier runner died.
func (r *runner) reattach(ctx context.Context) {
	rec := r.job.Record()
	if rec.Status == JobQueued || rec.VMID == 0 || rec.GuestDir == "" {
		r.destroyBound(ctx)
		r.setTerminal(ctx, JobFailed, -1, "interrupted before it started (its runner stopped)")
		return
	}
	sb, err := r.m.Get(ctx, rec.VMID)
	if err != nil || sb.State() == StateDestroyed {
		r.finish(ctx, JobFailed, -1, "sandbox is gone", false)
		return
	}
	r.sb = sb
	r.follow(ctx)
}

// destroyBound destroys the sandboxes bound to the job, for a job that is
// given up before its guest process started.
func (r *runner) destroyBound(ctx context.Context) {
	recs, err := r.m.store.ListSandboxes(ctx, SandboxFilter{JobID: r.id(), States: liveStates})
	if err != nil {
		r.m.log.Debug("list job sandboxes", "job_id", r.id(), "err", err)
		return
	}
	for _, rec := range recs {
		sb := r.m.handle(rec)
		if err := sb.destroy(ctx, ""); err != nil {
			r.m.log.Debug("destroy job sandbox", "job_id", r.id(), "vmid", rec.VMID, "err", err)
		}
	}
}

// killGuest kills the job's process group in the guest, if any.
func (r *runner) killGuest(ctx context.Context) {
	rec := r.job.Record()
	if rec.GuestDir == "" || rec.VMID == 0 {
		return
	}
	if r.sb == nil {
		sb, err := r.m.Get(ctx, rec.VMID)
		if err != nil {
			return
		}
		r.sb = sb
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	d := shellQuote(rec.GuestDir)
	// No "--" before the negative PID: dash's kill builtin rejects it.
	cmd := "cd && p=$(cat " + d + "/pid 2>/dev/null) && { kill -TERM -$p 2>/dev/null; " +
		"sleep 1; kill -KILL -$p 2>/dev/null; }; rm -rf " + d + "/secrets " + d + "/task; true"
	if _, err := r.exec(ctx, ExecRequest{Shell: cmd}); err != nil {
		r.m.log.Debug("kill job process", "job_id", rec.ID, "err", err)
	}
}

// finish collects artifacts (when collect is set), tears the sandbox down
// unless the job is keepalive, and then records the terminal status, so
// that a caller who sees the status sees the teardown done.
func (r *runner) finish(ctx context.Context, status JobStatus, code int, msg string,
	collect bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	var results []Artifact
	if collect && r.sb != nil {
		r.step(ctx, "collect")
		results = r.collect(ctx)
	}
	if rec, err := r.job.Refresh(ctx); err != nil || rec.Status.Terminal() {
		return // ended elsewhere, by a cancel or by its sandbox going away
	}
	r.teardown(ctx, status)
	r.setTerminal(ctx, status, code, msg, results...)
}

// setTerminal records the terminal status unless the job already ended. It
// reports whether this call ended it.
func (r *runner) setTerminal(ctx context.Context, status JobStatus, code int, msg string,
	results ...Artifact) bool {
	now := r.m.now()
	rec, err := r.update(ctx, func(j *JobRecord) {
		j.Status, j.ExitCode, j.Message, j.CompletedAt = status, code, msg, now
		j.Results = append(j.Results, results...)
	})
	if err != nil {
		return false
	}
	r.m.mu.Lock()
	delete(r.m.logCount, r.id())
	r.m.mu.Unlock()
	kind := map[JobStatus]string{JobCompleted: EventJobCompleted, JobFailed: EventJobFailed,
		JobTimeout: EventJobTimeout, JobCanceled: EventJobCanceled}[status]
	r.m.emit(ctx, Event{Kind: kind, JobID: rec.ID, VMID: rec.VMID, Message: msg,
		Data: map[string]any{"status": string(status), "exit_code": code,
			"duration_ms": now.Sub(rec.StartedAt).Milliseconds(), "error": failText(status, msg)}})
	return true
}

func failText(s JobStatus, msg string) string {
	if s == JobCompleted {
		return ""
	}
	return msg
}

// teardown moves the job's sandbox to the state matching the job and
// destroys it unless keepalive.
func (r *runner) teardown(ctx context.Context, status JobStatus) {
	rec := r.job.Record()
	if rec.VMID == 0 {
		return
	}
	sb, err := r.m.Get(ctx, rec.VMID)
	if err != nil || sb.State() == StateDestroyed || sb.Record().JobID != rec.ID {
		return
	}
	to := map[JobStatus]State{JobCompleted: StateCompleted, JobFailed: StateFailed,
		JobTimeout: StateTimeout}[status]
	if to != "" {
		if _, err := r.m.transition(ctx, sb, to, nil); err != nil {
			r.m.log.Debug("job sandbox state", "job_id", rec.ID, "err", err)
		}
	}
	if !rec.Keepalive {
		if err := sb.destroy(ctx, ""); err != nil {
			r.m.log.Debug("destroy job sandbox", "job_id", rec.ID, "err", err)
		}
	}
}

// collect downloads the job log and artifacts to the artifact directory,
// within Config.MaxArtifactBytes. A missing artifact, or one that does not
// fit, is reported as an event, not a failure.
func (r *runner) collect(ctx context.Context) []Artifact {
	rec := r.job.Record()
	dir := filepath.Join(r.m.cfg.ArtifactDir, rec.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.m.log.Debug("artifact dir", "job_id", rec.ID, "err", err)
		return nil
	}
	prof, _ := r.m.Profiles().Get(rec.Profile)
	wd := orString(prof.Job.Workdir, "work")
	pairs := [][2]string{{rec.GuestDir + "/log", jobLogName}}
	for _, a := range rec.Artifacts {
		pairs = append(pairs, [2]string{path.Join(wd, a), path.Clean(a)})
	}
	var out []Artifact
	budget := newByteBudget(r.m.cfg.MaxArtifactBytes)
	for _, p := range pairs {
		local := filepath.Join(dir, filepath.FromSlash(p[1]))
		if err := r.fetch(ctx, p[0], local, budget); err != nil {
			r.m.emit(ctx, Event{Kind: EventJobStep, JobID: rec.ID, VMID: rec.VMID,
				Message: err.Error(), Data: map[string]any{"step": "collect", "name": p[1],
					"error": err.Error()}})
			continue
		}
		out = append(out, r.describe(ctx, dir, local)...)
	}
	return out
}

// describe hashes the files under local (a file or a tree).
func (r *runner) describe(ctx context.Context, dir, local string) []Artifact {
	var out []Artifact
	_ = filepath.WalkDir(local, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		a, err := hashFile(p)
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		a.Name, a.Path = filepath.ToSlash(rel), p
		out = append(out, a)
		r.m.emit(ctx, Event{Kind: EventJobArtifact, JobID: r.id(), VMID: r.job.Record().VMID,
			Data: map[string]any{"name": a.Name, "size": a.Size, "sha256": a.SHA256}})
		return nil
	})
	return out
}

func hashFile(p string) (Artifact, error) {
	f, err := os.Open(p)
	if err != nil {
		return Artifact{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, bufio.NewReader(f))
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
