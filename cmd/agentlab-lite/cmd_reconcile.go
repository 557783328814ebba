package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

type findingJSON struct {
	VMID   int    `json:"vmid,omitempty"`
	JobID  string `json:"job_id,omitempty"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	Action string `json:"action,omitempty"`
}

func cmdReconcile(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	apply := fs.Bool("apply", false, "fix what is found, reap expired leases and stop idle "+
		"sandboxes")
	watch := fs.Bool("watch", false, "keep running as the maintenance process: reconcile, "+
		"reap and idle-stop periodically, and take over jobs whose runner died")
	_, _, err := c.args(fs, args, 0, 0)
	if err != nil {
		return err
	}
	if *watch {
		return c.maintain(ctx, nil)
	}
	a, err := c.open(ctx, modeCommand)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	out, err := reconcileOnce(ctx, a, *apply)
	if err != nil {
		return explain(err, "agentlab-lite help config")
	}
	if c.json {
		return c.printJSON(map[string]any{"applied": *apply, "findings": out})
	}
	if len(out) == 0 {
		fmt.Fprintln(c.stdout, "no findings: the store and Proxmox agree")
		return nil
	}
	t := newTable(c.stdout, "VMID", "JOB", "KIND", "DETAIL", "ACTION")
	for _, f := range out {
		vm := "-"
		if f.VMID != 0 {
			vm = strconv.Itoa(f.VMID)
		}
		t.row(vm, dash(f.JobID), f.Kind, f.Detail, dash(f.Action))
	}
	return t.flush()
}

// reconcileOnce runs one pass and, with apply, the reaper and idle stop.
// Jobs whose runner went silent are reported, not taken over: a one-shot
// process could not follow them.
func reconcileOnce(ctx context.Context, a *app, apply bool) ([]findingJSON, error) {
	rep, err := a.m.Reconcile(ctx, agentlab.ReconcileOptions{Apply: apply})
	if err != nil {
		return nil, err
	}
	out := []findingJSON{}
	for _, f := range rep.Findings {
		out = append(out, findingJSON{VMID: f.VMID, Kind: f.Kind, Detail: f.Detail,
			Action: f.Action})
	}
	if apply {
		reap, err := a.m.Reap(ctx)
		if err != nil {
			return nil, err
		}
		for _, id := range reap.Destroyed {
			out = append(out, findingJSON{VMID: id, Kind: "lease_expired", Detail: "lease ran out",
				Action: "destroyed"})
		}
		for _, id := range reap.Stopped {
			out = append(out, findingJSON{VMID: id, Kind: "lease_expired", Detail: "lease ran out",
				Action: "stopped"})
		}
		idle, err := a.m.StopIdle(ctx)
		if err != nil {
			return nil, err
		}
		for _, id := range idle {
			out = append(out, findingJSON{VMID: id, Kind: "idle", Detail: "no activity",
				Action: "stopped"})
		}
	}
	stale, err := staleJobs(ctx, a)
	return append(out, stale...), err
}

// staleJobs lists live jobs whose runner has not written a heartbeat for
// longer than the configured job heartbeat timeout.
func staleJobs(ctx context.Context, a *app) ([]findingJSON, error) {
	jobs, err := a.m.ListJobs(ctx, agentlab.JobFilter{
		Statuses: []agentlab.JobStatus{agentlab.JobQueued, agentlab.JobRunning}})
	if err != nil {
		return nil, err
	}
	var out []findingJSON
	for _, j := range jobs {
		if age := time.Since(j.Heartbeat); age > a.jobBeat {
			out = append(out, findingJSON{VMID: j.VMID, JobID: j.ID, Kind: "job_runner_silent",
				Detail: fmt.Sprintf("no heartbeat for %s", age.Round(time.Second)),
				Action: "run `agentlab-lite reconcile --watch` to take it over"})
		}
	}
	return out, nil
}

// maintain runs the maintenance Manager until ctx ends, printing what its
// background passes do. ready, when not nil, is called once it runs.
func (c *cli) maintain(ctx context.Context, ready func()) error {
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	return c.maintainConfig(ctx, cfg, ready)
}

func (c *cli) maintainConfig(ctx context.Context, cfg *config, ready func()) error {
	a, err := openApp(ctx, cfg, modeMaintain, nil, c.logger())
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	sub, err := a.m.Subscribe(agentlab.SubscribeOptions{EventFilter: agentlab.EventFilter{
		Kinds: []string{agentlab.EventReconciled, agentlab.EventLeaseExpired,
			agentlab.EventIdleStop, agentlab.EventJobCompleted, agentlab.EventJobFailed,
			agentlab.EventJobTimeout, agentlab.EventJobCanceled}}})
	if err != nil {
		return err
	}
	defer sub.Close()
	if !c.json {
		fmt.Fprintln(c.stderr, "maintenance: reconciling, reaping leases and stopping idle "+
			"sandboxes; Ctrl-C to stop")
	}
	if ready != nil {
		ready()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C():
			if !ok {
				return nil
			}
			if err := c.printEvent(ev); err != nil {
				return err
			}
		}
	}
}
