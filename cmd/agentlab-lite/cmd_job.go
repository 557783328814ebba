package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

type jobJSON struct {
	ID          string         `json:"id"`
	RepoURL     string         `json:"repo_url,omitempty"`
	Ref         string         `json:"ref,omitempty"`
	Profile     string         `json:"profile"`
	Task        string         `json:"task"`
	Mode        string         `json:"mode"`
	TTLMinutes  int            `json:"ttl_minutes,omitempty"`
	Keepalive   bool           `json:"keepalive"`
	Status      string         `json:"status"`
	SandboxVMID int            `json:"sandbox_vmid,omitempty"`
	Result      *jobResultJSON `json:"result,omitempty"`
	Artifacts   []artifactJSON `json:"artifacts,omitempty"`
	Events      []eventJSON    `json:"events,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
	StartedAt   *time.Time     `json:"started_at,omitempty"`
	CompletedAt *time.Time     `json:"completed_at,omitempty"`
	UpdatedAt   time.Time      `json:"updated_at"`
}

type jobResultJSON struct {
	Status     string    `json:"status"`
	Message    string    `json:"message"`
	ExitCode   int       `json:"exit_code"`
	ReportedAt time.Time `json:"reported_at"`
}

type artifactJSON struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func jobView(rec agentlab.JobRecord) jobJSON {
	v := jobJSON{ID: rec.ID, RepoURL: rec.RepoURL, Ref: rec.Ref, Profile: rec.Profile,
		Task: rec.Task, Mode: rec.Mode, TTLMinutes: int(rec.TTL / time.Minute),
		Keepalive: rec.Keepalive, Status: string(rec.Status), SandboxVMID: rec.VMID,
		CreatedAt: rec.CreatedAt.UTC(), StartedAt: tsPtr(rec.StartedAt),
		CompletedAt: tsPtr(rec.CompletedAt), UpdatedAt: rec.UpdatedAt.UTC()}
	if rec.Status.Terminal() {
		v.Result = &jobResultJSON{Status: string(rec.Status), Message: rec.Message,
			ExitCode: rec.ExitCode, ReportedAt: rec.CompletedAt.UTC()}
	}
	for _, a := range rec.Results {
		v.Artifacts = append(v.Artifacts, artifactJSON{Name: a.Name, Path: a.Path,
			Size: a.Size, SHA256: a.SHA256})
	}
	return v
}

func writeJob(w io.Writer, v jobJSON) {
	ttl, sandbox, code, msg := "-", "-", "-", "-"
	if v.TTLMinutes > 0 {
		ttl = fmt.Sprintf("%dm", v.TTLMinutes)
	}
	if v.SandboxVMID != 0 {
		sandbox = fmt.Sprint(v.SandboxVMID)
	}
	if v.Result != nil {
		code, msg = fmt.Sprint(v.Result.ExitCode), v.Result.Message
	}
	kv(w, "ID", v.ID, "Status", v.Status, "Profile", v.Profile, "Repo", dash(v.RepoURL),
		"Ref", dash(v.Ref), "Task", oneLine(v.Task), "Mode", v.Mode, "TTL", ttl,
		"Keepalive", fmt.Sprint(v.Keepalive), "Sandbox", sandbox, "Exit Code", code,
		"Message", oneLine(msg), "Artifacts", fmt.Sprint(len(v.Artifacts)),
		"Created At", ts(v.CreatedAt), "Started At", tsp(v.StartedAt),
		"Completed At", tsp(v.CompletedAt), "Updated At", ts(v.UpdatedAt))
}

// job looks a job up by ID (or a unique prefix of one).
func (a *app) job(ctx context.Context, id string) (*agentlab.Job, error) {
	j, err := a.m.GetJob(ctx, id)
	if !errors.Is(err, agentlab.ErrNotFound) {
		return j, err
	}
	recs, lerr := a.m.ListJobs(ctx, agentlab.JobFilter{})
	if lerr != nil {
		return nil, lerr
	}
	var match []string
	for _, r := range recs {
		if strings.HasPrefix(r.ID, id) || strings.HasPrefix(r.ID, "job_"+id) {
			match = append(match, r.ID)
		}
	}
	if len(match) == 1 {
		return a.m.GetJob(ctx, match[0])
	}
	ce := failf("agentlab-lite job list", "job %s not found", id)
	if len(match) > 1 {
		ce.hints = []string{"several jobs match: " + strings.Join(match[:min(5, len(match))], ", ")}
	}
	return nil, ce
}

func cmdJobRun(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	spec := agentlab.JobSpec{}
	fs.StringVar(&spec.RepoURL, "repo", "", "git repository `URL` cloned into the work directory")
	fs.StringVar(&spec.Ref, "ref", "", "branch, tag or commit (default: the default branch)")
	fs.StringVar(&spec.Task, "task", "", "the task `text` (required unless --task-file)")
	taskFile := fs.String("task-file", "", "read the task from `file` (- for stdin)")
	fs.StringVar(&spec.Profile, "profile", "", "profile `name` (required)")
	var ttl ttlFlag
	fs.Var(&ttl, "ttl", "sandbox lease: minutes (120) or a duration (45m, 2h)")
	var keep optBool
	fs.Var(&keep, "keepalive", "keep the sandbox after the job ends")
	fs.DurationVar(&spec.Timeout, "timeout", 0, "job deadline from its start (default: none)")
	fs.StringVar(&spec.Mode, "mode", "", "job mode handed to the agent (default: the profile's)")
	fs.StringVar(&spec.Command, "command", "", "override the profile's job command")
	env := envFlag{}
	fs.Var(env, "env", "set `K=V` in the job's environment (repeatable)")
	var secrets, artifacts listFlag
	fs.Var(&secrets, "secret", "deliver `NAME[=ENV]` from this environment as a secret "+
		"(repeatable; never stored)")
	fs.Var(&artifacts, "artifact", "collect this work-directory `path` (repeatable)")
	wait := fs.Bool("wait", false, "follow the job to its end; exit 1 unless it COMPLETED")
	_, _, err := c.args(fs, args, 0, 0)
	if err != nil {
		return err
	}
	if err := c.completeSpec(&spec, *taskFile, secrets, ttl, keep, env, artifacts); err != nil {
		return err
	}
	a, err := c.open(ctx, modeCommand)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	if err := a.requireProfile(spec.Profile); err != nil {
		return err
	}
	reply, err := c.spawnSupervisor(ctx, a, superviseRequest{Kind: "job", Job: &spec})
	if err != nil {
		return err
	}
	j, err := a.m.GetJob(ctx, reply.JobID)
	if err != nil {
		return err
	}
	if *wait {
		return c.followJob(ctx, a, j)
	}
	return c.printJob(ctx, a, j.Record(), false)
}

// maxTask bounds a job's task text, as the SDK does.
const maxTask = 1 << 20

// completeSpec fills the parts of the spec that need checks or the
// environment: task file, secrets, TTL, keepalive, env and artifacts.
func (c *cli) completeSpec(spec *agentlab.JobSpec, taskFile string, secrets listFlag,
	ttl ttlFlag, keep optBool, env envFlag, artifacts listFlag) error {
	if taskFile != "" {
		if spec.Task != "" {
			return usagef(c.helpRef(), "give --task or --task-file, not both")
		}
		if err := c.act(); err != nil {
			return err
		}
		var data []byte
		var err error
		if taskFile == "-" {
			data, err = io.ReadAll(io.LimitReader(c.stdin, maxTask+1))
			if err == nil && len(data) > maxTask {
				err = fmt.Errorf("the task is larger than %d bytes", maxTask)
			}
		} else {
			data, err = readLimited(taskFile, maxTask)
		}
		if err != nil {
			return usagef(c.helpRef(), "read --task-file: %v", err)
		}
		spec.Task = string(data)
	}
	if len(spec.Task) > maxTask {
		return usagef(c.helpRef(), "the task is larger than %d bytes", maxTask)
	}
	switch {
	case spec.Profile == "":
		return usagef(c.helpRef(), "missing --profile (see agentlab-lite profile list)")
	case strings.TrimSpace(spec.Task) == "":
		return usagef(c.helpRef(), "missing --task (or --task-file)")
	case spec.Timeout < 0:
		return usagef(c.helpRef(), "--timeout %v is negative", spec.Timeout)
	case strings.HasPrefix(spec.RepoURL, "-") || strings.HasPrefix(spec.Ref, "-"):
		return usagef(c.helpRef(), "--repo and --ref must not start with -")
	}
	for _, p := range artifacts {
		if err := checkArtifact(p); err != nil {
			return usagef(c.helpRef(), "--artifact: %v", err)
		}
	}
	if ttl.set {
		spec.TTL = ttl.d
	}
	spec.Keepalive = keep.ptr()
	if len(env) > 0 {
		spec.Env = map[string]string(env)
	}
	spec.Artifacts = artifacts
	for _, s := range secrets {
		name, from, err := parseSecret(s)
		if err != nil {
			return usagef(c.helpRef(), "--secret %s: %v", s, err)
		}
		v, found := os.LookupEnv(from)
		if !found {
			return usagef(c.helpRef(), "--secret %s: environment variable %s is not set", s, from)
		}
		if spec.Secrets == nil {
			spec.Secrets = map[string]string{}
		}
		spec.Secrets[name] = v
	}
	return nil
}

// followJob prints the job's progress (on a terminal) until it ends, then
// the job; it fails unless the job COMPLETED.
func (c *cli) followJob(ctx context.Context, a *app, j *agentlab.Job) error {
	f := agentlab.EventFilter{JobID: j.ID()}
	for {
		evs, err := a.m.Events(ctx, f)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if c.interactive() {
				fmt.Fprintln(c.stderr, progressLine(ev))
			}
			f.AfterID = ev.ID
		}
		rec, err := j.Refresh(ctx)
		if err != nil {
			return err
		}
		if rec.Status.Terminal() && len(evs) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return &cliError{msg: fmt.Sprintf("interrupted; job %s goes on without this "+
				"command", j.ID()), next: "agentlab-lite job logs --follow " + j.ID(),
				code: exitInterrupted}
		case <-time.After(followPoll):
		}
	}
	rec := j.Record()
	if err := c.printJob(ctx, a, rec, false); err != nil {
		return err
	}
	if rec.Status != agentlab.JobCompleted {
		return failf("agentlab-lite job logs "+rec.ID, "job %s ended %s: %s", rec.ID, rec.Status,
			dash(rec.Message))
	}
	return nil
}

// printJob prints a job; with events, its lifecycle events too (JSON).
func (c *cli) printJob(ctx context.Context, a *app, rec agentlab.JobRecord, events bool) error {
	v := jobView(rec)
	if events {
		evs, err := a.m.Events(ctx, agentlab.EventFilter{JobID: rec.ID, Kinds: jobEventKinds})
		if err != nil {
			return err
		}
		v.Events = eventViews(evs)
	}
	if c.json {
		return c.printJSON(v)
	}
	writeJob(c.stdout, v)
	return nil
}

// jobEventKinds are the job events "job show" includes (not the log lines).
var jobEventKinds = []string{agentlab.EventJobCreated, agentlab.EventJobRunning,
	agentlab.EventJobStep, agentlab.EventJobCompleted, agentlab.EventJobFailed,
	agentlab.EventJobTimeout, agentlab.EventJobCanceled, agentlab.EventJobArtifact}

// oneJob parses "CMD JOB" and opens the app.
// check, when not nil, validates the flags before anything is opened.
func (c *cli) oneJob(ctx context.Context, fs *flag.FlagSet, args []string,
	check func() error) (*app, *agentlab.Job, error) {
	pos, _, err := c.args(fs, args, 1, 1)
	if err == nil && check != nil {
		err = check()
	}
	if err != nil {
		return nil, nil, err
	}
	if strings.TrimSpace(pos[0]) == "" {
		return nil, nil, usagef(c.helpRef(), "empty job ID (see agentlab-lite job list)")
	}
	a, err := c.open(ctx, modeCommand)
	if err != nil {
		return nil, nil, err
	}
	j, err := a.job(ctx, pos[0])
	if err != nil {
		a.Close(ctx)
		return nil, nil, err
	}
	return a, j, nil
}

func cmdJobShow(ctx context.Context, c *cli, args []string) error {
	a, j, err := c.oneJob(ctx, c.flags(), args, nil)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	return c.printJob(ctx, a, j.Record(), true)
}

func cmdJobList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var statuses listFlag
	fs.Var(&statuses, "status", "only this `STATUS` (repeatable)")
	limit := fs.Int("limit", 50, "at most `N` jobs (0: all)")
	_, _, err := c.args(fs, args, 0, 0)
	if err != nil {
		return err
	}
	if *limit < 0 {
		return usagef(c.helpRef(), "--limit must not be negative")
	}
	f := agentlab.JobFilter{Limit: *limit}
	for _, s := range statuses {
		st := agentlab.JobStatus(strings.ToUpper(s))
		if !slices.Contains(jobStatuses, st) {
			return usagef(c.helpRef(), "unknown job status %q (want one of %s)", s,
				joinStatuses(jobStatuses))
		}
		f.Statuses = append(f.Statuses, st)
	}
	a, err := c.open(ctx, modeCommand)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	recs, err := a.m.ListJobs(ctx, f)
	if err != nil {
		return err
	}
	views := make([]jobJSON, len(recs))
	for i, r := range recs {
		views[i] = jobView(r)
	}
	if c.json {
		return c.printJSON(map[string]any{"jobs": views})
	}
	t := newTable(c.stdout, "ID", "STATUS", "PROFILE", "SANDBOX", "CREATED", "TASK")
	for _, v := range views {
		sb := "-"
		if v.SandboxVMID != 0 {
			sb = fmt.Sprint(v.SandboxVMID)
		}
		task := oneLine(v.Task)
		if len(task) > 48 {
			task = task[:47] + "…"
		}
		t.row(v.ID, v.Status, v.Profile, sb, ts(v.CreatedAt), task)
	}
	return t.flush()
}

func cmdJobLogs(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	tail := fs.Int("tail", 0, "only the last `N` lines")
	follow := fs.Bool("follow", false, "keep printing until the job ends "+
		"(with --json: one line per JSON object)")
	a, j, err := c.oneJob(ctx, fs, args, func() error {
		if *tail < 0 {
			return usagef(c.helpRef(), "--tail must not be negative")
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	opts := agentlab.LogOptions{Tail: *tail, Follow: *follow}
	if c.json {
		return c.jobLogsJSON(ctx, j, opts)
	}
	err = j.Logs(ctx, c.stdout, opts)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// jobLogsJSON prints a job's log as {"job_id", "lines"}, or when
// following as one {"job_id", "line"} object per line.
func (c *cli) jobLogsJSON(ctx context.Context, j *agentlab.Job, opts agentlab.LogOptions) error {
	lines := []string{}
	lw := &lineWriter{emit: func(s string) error {
		if opts.Follow {
			return c.printJSONLine(map[string]string{"job_id": j.ID(), "line": s})
		}
		lines = append(lines, s)
		return nil
	}}
	err := j.Logs(ctx, lw, opts)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if err := lw.flush(); err != nil {
		return err
	}
	if opts.Follow {
		return nil
	}
	return c.printJSON(map[string]any{"job_id": j.ID(), "lines": lines})
}

// lineWriter is an io.Writer that hands each complete line written to it,
// without its newline, to emit; flush hands over an unfinished last line.
type lineWriter struct {
	buf  []byte
	emit func(line string) error
}

// Write implements io.Writer.
func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		if err := w.emit(line); err != nil {
			return len(p), err
		}
	}
}

func (w *lineWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	line := string(w.buf)
	w.buf = nil
	return w.emit(line)
}

func cmdJobCancel(ctx context.Context, c *cli, args []string) error {
	a, j, err := c.oneJob(ctx, c.flags(), args, nil)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	done, err := cancelViaSupervisor(ctx, a.stateDir, j.ID())
	if err == nil && !done {
		err = j.Cancel(ctx)
	}
	if err != nil {
		return explain(err, "agentlab-lite job show "+j.ID())
	}
	rec, err := j.Refresh(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJob(ctx, a, rec, false)
	}
	if rec.Status != agentlab.JobCanceled {
		fmt.Fprintf(c.stdout, "job %s had already ended (status=%s)\n", rec.ID, rec.Status)
		return nil
	}
	fmt.Fprintf(c.stdout, "job %s canceled (status=%s)\n", rec.ID, rec.Status)
	return nil
}

func cmdJobArtifacts(ctx context.Context, c *cli, args []string) error {
	a, j, err := c.oneJob(ctx, c.flags(), args, nil)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	v := jobView(j.Record())
	if c.json {
		return c.printJSON(map[string]any{"job": v.ID, "status": v.Status,
			"artifacts": nonNil(v.Artifacts)})
	}
	t := newTable(c.stdout, "NAME", "SIZE", "SHA256", "PATH")
	for _, art := range v.Artifacts {
		t.row(art.Name, fmt.Sprint(art.Size), art.SHA256, art.Path)
	}
	return t.flush()
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func joinStatuses(s []agentlab.JobStatus) string {
	out := make([]string, len(s))
	for i, st := range s {
		out[i] = string(st)
	}
	return strings.Join(out, ", ")
}
