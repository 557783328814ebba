package agentlab_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of loggers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecretsNeverLeak runs sandboxes and a job with a secret on the real
// path with every logger at debug level, provokes errors, and then scans the
// logs, events, errors, records and the database files for the API token
// secret and the job secret.
func TestSecretsNeverLeak(t *testing.T) {
	const jobSecret = "job-secret-6f1c2d9e"
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w := newLoggedWorld(t, pvesim.Config{}, logger)
	m := w.manager
	ctx := ctxT(t)
	var errs []string

	sb, err := m.Create(ctx, agentlab.CreateRequest{Profile: "yolo-ephemeral"})
	require.NoError(t, err)
	errs = append(errs, errString(sb.RestoreSnapshot(ctx, "nosuch", nil)))
	keep := true
	j, err := m.RunJob(ctx, agentlab.JobSpec{Profile: "yolo-ephemeral", Task: "t",
		Command: "test -n \"$API_KEY\" && echo have-key; exit 3", Keepalive: &keep,
		Secrets: map[string]string{"API_KEY": jobSecret}})
	require.NoError(t, err)
	rec, err := j.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, agentlab.JobFailed, rec.Status)
	var jobLog bytes.Buffer
	require.NoError(t, j.Logs(ctx, &jobLog, agentlab.LogOptions{}))
	require.Equal(t, "have-key\n", jobLog.String(), "the secret reached the job")
	// The job's guest is kept: its files (secrets removed) are scanned below.
	guests := treeFiles(t, w.sim.Dir())
	require.NotEmpty(t, guests, "the kept guest's files")

	// Hypervisor errors on the real adapter.
	undo := w.sim.InjectFault(pvesim.Fault{Path: regexp.MustCompile(`/qemu/\d+`),
		Status: 500, Message: "injected", Probability: 1})
	_, err = m.Reconcile(ctx, agentlab.ReconcileOptions{})
	errs = append(errs, errString(err), errString(sb.Stop(ctx)))
	undo()

	// A bad token: the error must not echo the secret it was given.
	_, err = proxmox.New(ctx, proxmox.Config{URL: w.sim.URL(), TokenID: w.sim.TokenID(),
		TokenSecret: "wrong-" + w.sim.TokenSecret(), Fingerprint: w.sim.Fingerprint(),
		Logger: logger})
	require.Error(t, err)
	errs = append(errs, err.Error())
	require.NoError(t, sb.Destroy(ctx))
	jsb, err := m.Get(ctx, rec.VMID)
	require.NoError(t, err)
	require.NoError(t, jsb.Destroy(ctx))

	evs, err := m.Events(ctx, agentlab.EventFilter{})
	require.NoError(t, err)
	jobs, err := m.ListJobs(ctx, agentlab.JobFilter{})
	require.NoError(t, err)
	recs, err := m.List(ctx, agentlab.SandboxFilter{})
	require.NoError(t, err)
	dump, err := json.Marshal([]any{evs, jobs, recs, errs})
	require.NoError(t, err)
	haystacks := map[string]string{"logs": logs.String(), "records": string(dump),
		"config": w.cfg.Hypervisor.(*proxmox.Hypervisor).String()}
	for _, f := range dbFiles(t, w) {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		haystacks[f] = string(data)
	}
	maps.Copy(haystacks, guests)
	arts := treeFiles(t, w.cfg.ArtifactDir)
	require.NotEmpty(t, arts, "the job's log and artifacts were downloaded")
	maps.Copy(haystacks, arts)
	require.NotEmpty(t, logs.String(), "debug logging was on")
	for _, src := range []string{"component=go-proxmox", "dial guest", "sandbox state"} {
		require.True(t, strings.Contains(logs.String(), src), "no %q: the Manager's and "+
			"the adapters' logs are all scanned", src)
	}
	require.Contains(t, strings.Join(errs, "\n"), "injected", "adapter errors are scanned")
	for name, hay := range haystacks {
		for _, secret := range []string{w.sim.TokenSecret(), jobSecret} {
			require.False(t, strings.Contains(hay, secret), "%s leaks a secret", name)
		}
	}
}

// treeFiles reads every regular file under dir, by path.
func treeFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		files[p] = string(data)
		return err
	})
	require.NoError(t, err)
	return files
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// dbFiles returns the SQLite database and its WAL, after checking their
// owner-only permissions.
func dbFiles(t *testing.T, w *realWorld) []string {
	t.Helper()
	matches, err := filepath.Glob(w.store.Path() + "*")
	require.NoError(t, err)
	require.NotEmpty(t, matches)
	for _, f := range matches {
		st, err := os.Stat(f)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	return matches
}
