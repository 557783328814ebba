package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/agentlab-sdk/agentlab"
)

var (
	jobStatuses = []agentlab.JobStatus{agentlab.JobQueued, agentlab.JobRunning,
		agentlab.JobCompleted, agentlab.JobFailed, agentlab.JobTimeout, agentlab.JobCanceled}
	networkModes = []agentlab.NetworkMode{agentlab.NetworkOff, agentlab.NetworkNAT,
		agentlab.NetworkAllowlist}
)

type statusJSON struct {
	Sandboxes      map[string]int `json:"sandboxes"`
	Jobs           map[string]int `json:"jobs"`
	NetworkModes   map[string]int `json:"network_modes"`
	Artifacts      artifactsJSON  `json:"artifacts"`
	RecentFailures []eventJSON    `json:"recent_failures"`
}

type artifactsJSON struct {
	Root       string `json:"root"`
	TotalBytes uint64 `json:"total_bytes"`
	FreeBytes  uint64 `json:"free_bytes"`
	UsedBytes  uint64 `json:"used_bytes"`
	Error      string `json:"error,omitempty"`
}

func cmdStatus(ctx context.Context, c *cli, args []string) error {
	_, _, err := c.args(c.flags(), args, 0, 0)
	if err != nil {
		return err
	}
	a, err := c.open(ctx, modeCommand)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	st, err := a.m.Status(ctx)
	if err != nil {
		return err
	}
	out := statusJSON{Sandboxes: map[string]int{}, Jobs: map[string]int{},
		NetworkModes: map[string]int{}, Artifacts: diskUsage(a.cfg.ArtifactsDir),
		RecentFailures: eventViews(st.RecentFailures)}
	for _, s := range agentlab.AllStates {
		out.Sandboxes[string(s)] = st.SandboxesByState[s]
	}
	for _, s := range jobStatuses {
		out.Jobs[string(s)] = st.JobsByStatus[s]
	}
	for _, m := range networkModes {
		out.NetworkModes[string(m)] = st.SandboxesByMode[string(m)]
	}
	if c.json {
		return c.printJSON(out)
	}
	return c.writeStatus(out)
}

func (c *cli) writeStatus(s statusJSON) error {
	w := c.stdout
	fmt.Fprintln(w, "Sandboxes:")
	t := newTable(w, "STATE", "COUNT")
	for _, st := range agentlab.AllStates {
		t.row(string(st), strconv.Itoa(s.Sandboxes[string(st)]))
	}
	_ = t.flush()
	fmt.Fprintln(w, "Network Modes:")
	t = newTable(w, "MODE", "COUNT")
	for _, m := range networkModes {
		t.row(string(m), strconv.Itoa(s.NetworkModes[string(m)]))
	}
	_ = t.flush()
	fmt.Fprintln(w, "Jobs:")
	t = newTable(w, "STATUS", "COUNT")
	for _, j := range jobStatuses {
		t.row(string(j), strconv.Itoa(s.Jobs[string(j)]))
	}
	_ = t.flush()
	fmt.Fprintln(w, "Artifacts:")
	kv(w, "Root", s.Artifacts.Root, "Total Bytes", fmt.Sprint(s.Artifacts.TotalBytes),
		"Free Bytes", fmt.Sprint(s.Artifacts.FreeBytes),
		"Used Bytes", fmt.Sprint(s.Artifacts.UsedBytes), "Error", dash(s.Artifacts.Error))
	fmt.Fprintln(w, "Recent Failures:")
	t = newTable(w, "TIME", "KIND", "JOB", "SANDBOX", "MESSAGE")
	for _, ev := range s.RecentFailures {
		vm := "-"
		if ev.VMID != 0 {
			vm = strconv.Itoa(ev.VMID)
		}
		t.row(ts(ev.Time), ev.Kind, dash(ev.JobID), vm, dash(ev.Message))
	}
	return t.flush()
}

// diskUsage reports the filesystem holding the artifacts directory (or its
// nearest existing parent).
func diskUsage(root string) artifactsJSON {
	out := artifactsJSON{Root: root}
	dir := root
	for {
		if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			break
		}
		dir = filepath.Dir(dir)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		out.Error = err.Error()
		return out
	}
	bs := uint64(st.Bsize)
	out.TotalBytes, out.FreeBytes = st.Blocks*bs, st.Bavail*bs
	out.UsedBytes = out.TotalBytes - st.Bfree*bs
	return out
}
