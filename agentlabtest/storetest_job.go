package agentlabtest

import (
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/stretchr/testify/require"
)

// fullJob returns a job with every field set to a non-zero value.
func fullJob(id string) agentlab.JobRecord {
	return agentlab.JobRecord{
		ID: id, RepoURL: "https://example.com/r.git", Ref: "main", Task: "run tests",
		Profile: "yolo", Mode: "dangerous", Command: "make test",
		Env:       map[string]string{"A": "1", "B": "two words"},
		Artifacts: []string{"/out/report.xml", "/out/log.txt"},
		TTL:       2*time.Hour + time.Nanosecond, Keepalive: true,
		SecretNames: []string{"GITHUB_TOKEN"},
		Status:      agentlab.JobCompleted, VMID: 1065, ExitCode: 3, Message: "exit 3",
		Results: []agentlab.Artifact{{Name: "report.xml", Path: "/tmp/a/report.xml",
			Size: 1234, SHA256: "ab12"}},
		CreatedAt: baseTime, StartedAt: baseTime.Add(time.Second),
		CompletedAt: baseTime.Add(time.Minute), Deadline: baseTime.Add(time.Hour),
		Timeout: 90 * time.Minute, Runner: "host/42/abcd", Heartbeat: baseTime.Add(2 * time.Second),
		GuestDir: ".agentlab/jobs/" + id, LogOffset: 4096,
		UpdatedAt: baseTime, Version: 1,
	}
}

// normJob makes r comparable: times in UTC, empty maps and slices as nil.
func normJob(r agentlab.JobRecord) agentlab.JobRecord {
	for _, p := range []*time.Time{&r.CreatedAt, &r.StartedAt, &r.CompletedAt,
		&r.UpdatedAt, &r.Deadline, &r.Heartbeat} {
		*p = normTime(*p)
	}
	if len(r.Env) == 0 {
		r.Env = nil
	}
	if len(r.Artifacts) == 0 {
		r.Artifacts = nil
	}
	if len(r.SecretNames) == 0 {
		r.SecretNames = nil
	}
	if len(r.Results) == 0 {
		r.Results = nil
	}
	return r
}

// jobIDs returns the IDs of recs in order.
func jobIDs(recs []agentlab.JobRecord) []string {
	out := []string{}
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

// testJobRoundTrip checks that every job field survives create, get and list.
func testJobRoundTrip(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	rec := fullJob("job_00000000000000aa")
	requireAllSet(t, rec)
	require.NoError(t, s.CreateJob(ctx, &rec))
	require.NotZero(t, rec.Version)
	require.False(t, rec.UpdatedAt.IsZero())
	bare := agentlab.JobRecord{ID: "job_00000000000000bb", Status: agentlab.JobQueued}
	require.NoError(t, s.CreateJob(ctx, &bare))

	got, err := s.GetJob(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, normJob(rec), normJob(got))
	list, err := s.ListJobs(ctx, agentlab.JobFilter{VMID: 1065})
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, normJob(rec), normJob(list[0]))
	got, err = s.GetJob(ctx, bare.ID)
	require.NoError(t, err)
	require.Equal(t, normJob(bare), normJob(got))
}

// testJobConflict checks that a taken job ID fails with ErrAlreadyExists and changes nothing.
func testJobConflict(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	rec := fullJob("job_00000000000000cc")
	require.NoError(t, s.CreateJob(ctx, &rec))
	dup := agentlab.JobRecord{ID: rec.ID, Status: agentlab.JobQueued}
	err := s.CreateJob(ctx, &dup)
	requireErrorIs(t, err, agentlab.ErrAlreadyExists)
	got, err := s.GetJob(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, normJob(rec), normJob(got))
}

// testJobUpdate checks UpdateJob: Version+1, the stored result, and fn errors returned as is.
func testJobUpdate(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	rec := fullJob("job_00000000000000dd")
	rec.Status = agentlab.JobRunning
	require.NoError(t, s.CreateJob(ctx, &rec))
	out, err := s.UpdateJob(ctx, rec.ID, func(r *agentlab.JobRecord) error {
		r.Status, r.ExitCode = agentlab.JobFailed, 1
		r.Results = append(r.Results, agentlab.Artifact{Name: "b", Size: 1})
		r.Env["C"] = "3"
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, rec.Version+1, out.Version)
	got, err := s.GetJob(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, normJob(out), normJob(got))
	require.Equal(t, agentlab.JobFailed, got.Status)
	require.Len(t, got.Results, 2)
	require.Equal(t, "3", got.Env["C"])

	want := &fnErr{code: 9}
	_, err = s.UpdateJob(ctx, rec.ID, func(r *agentlab.JobRecord) error {
		r.Status = agentlab.JobCanceled
		return want
	})
	require.True(t, err == error(want), "fn's error returned as is, got %v", err)
	again, err := s.GetJob(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, normJob(got), normJob(again))
}

// testJobFilters checks every JobFilter field and the newest-first order.
func testJobFilters(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	jobs := []agentlab.JobRecord{
		{ID: "job_1", Status: agentlab.JobQueued, VMID: 0, CreatedAt: baseTime},
		{ID: "job_2", Status: agentlab.JobRunning, VMID: 10, CreatedAt: baseTime.Add(time.Second)},
		{ID: "job_3", Status: agentlab.JobCompleted, VMID: 11, CreatedAt: baseTime.Add(2 * time.Second)},
		{ID: "job_4", Status: agentlab.JobFailed, VMID: 10, CreatedAt: baseTime.Add(3 * time.Second)},
	}
	for _, i := range []int{2, 0, 3, 1} {
		require.NoError(t, s.CreateJob(ctx, &jobs[i]))
	}
	tests := []struct {
		name string
		f    agentlab.JobFilter
		want []string
	}{
		{"all newest first", agentlab.JobFilter{}, []string{"job_4", "job_3", "job_2", "job_1"}},
		{"statuses", agentlab.JobFilter{Statuses: []agentlab.JobStatus{agentlab.JobQueued,
			agentlab.JobRunning}}, []string{"job_2", "job_1"}},
		{"vmid", agentlab.JobFilter{VMID: 10}, []string{"job_4", "job_2"}},
		{"limit", agentlab.JobFilter{Limit: 2}, []string{"job_4", "job_3"}},
		{"combined", agentlab.JobFilter{VMID: 10, Statuses: []agentlab.JobStatus{
			agentlab.JobFailed}, Limit: 5}, []string{"job_4"}},
		{"nothing", agentlab.JobFilter{VMID: 11, Statuses: []agentlab.JobStatus{
			agentlab.JobQueued}}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListJobs(t.Context(), tc.f)
			require.NoError(t, err)
			require.Equal(t, tc.want, jobIDs(got))
		})
	}
}
