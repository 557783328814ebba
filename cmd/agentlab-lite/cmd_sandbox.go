package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/agentlab-sdk/agentlab"
)

// sandbox resolves a VMID (or a sandbox name) to a handle. An unknown one
// fails with the closest existing VMIDs as a hint.
func (a *app) sandbox(ctx context.Context, arg string) (*agentlab.Sandbox, error) {
	vmid, err := strconv.Atoi(arg)
	if err != nil {
		sb, err := a.m.GetByName(ctx, arg)
		if errors.Is(err, agentlab.ErrNotFound) {
			return nil, failf("agentlab-lite sandbox list", "sandbox %q not found", arg)
		}
		return sb, err
	}
	sb, err := a.m.Get(ctx, vmid)
	if !errors.Is(err, agentlab.ErrNotFound) {
		return sb, err
	}
	recs, lerr := a.m.List(ctx, agentlab.SandboxFilter{})
	if lerr != nil {
		return nil, lerr
	}
	known := make([]int, len(recs))
	for i, r := range recs {
		known[i] = r.VMID
	}
	return nil, notFoundSandbox(vmid, known)
}

// unknownProfile reports a profile that does not exist, listing the others.
func unknownProfile(name string, set *agentlab.ProfileSet) *cliError {
	names := set.Names()
	avail := strings.Join(names, ", ")
	if avail == "" {
		avail = "(none)"
	}
	ce := failf("agentlab-lite profile list", "unknown profile %q. Available profiles: %s",
		name, avail)
	if s := suggest(name, names); s != "" {
		ce.hints = []string{fmt.Sprintf("did you mean %q?", s)}
	}
	return ce
}

// requireProfile checks that the named profile exists; when it does not,
// the profile files that failed to load are named, since one may hold it.
func (a *app) requireProfile(name string) error {
	set := a.m.Profiles()
	if _, err := set.Get(name); err == nil {
		return nil
	}
	ce := unknownProfile(name, set)
	for _, err := range a.profErrs {
		ce.hints = append(ce.hints, "not loaded: "+oneLine(sdkText(err)))
	}
	return ce
}

// printSandbox prints the sandbox as JSON or as the "show" block.
func (c *cli) printSandbox(a *app, rec agentlab.SandboxRecord) error {
	v := sandboxView(rec, a.m.Profiles())
	if c.json {
		return c.printJSON(v)
	}
	writeSandbox(c.stdout, v)
	return nil
}

func cmdSandboxNew(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	profile := fs.String("profile", "", "profile `name` (required)")
	name := fs.String("name", "", "sandbox `name` (default sandbox-VMID)")
	vmid := fs.Int("vmid", 0, "use this `VMID`; fails if it is taken (default: a free one)")
	var ttl ttlFlag
	fs.Var(&ttl, "ttl", "lease: minutes (120), a duration (45m, 2h) or never "+
		"(default: the profile's)")
	var keep optBool
	fs.Var(&keep, "keepalive", "keep the sandbox after its job ends")
	labels := labelsFlag{}
	fs.Var(labels, "label", "label `k=v` (repeatable)")
	noWait := fs.Bool("no-wait", false, "return once the VM boots; a detached process "+
		"finishes readiness")
	_, _, err := c.args(fs, args, 0, 0)
	if err != nil {
		return err
	}
	if *profile == "" {
		return usagef(c.helpRef(), "missing --profile (see agentlab-lite profile list)")
	}
	for _, err := range []error{checkName(*name), checkVMID(*vmid)} {
		if err != nil {
			return usagef(c.helpRef(), "%v", err)
		}
	}
	a, err := c.open(ctx, modeCommand)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	if err := a.requireProfile(*profile); err != nil {
		return err
	}
	req := agentlab.CreateRequest{Profile: *profile, Name: *name, VMID: *vmid, TTL: ttl.d,
		Keepalive: keep.ptr(), Labels: map[string]string(labels)}
	if len(labels) == 0 {
		req.Labels = nil
	}
	if *noWait {
		return c.createDetached(ctx, a, req)
	}
	return c.create(ctx, a, req)
}

func (c *cli) create(ctx context.Context, a *app, req agentlab.CreateRequest) error {
	var sb *agentlab.Sandbox
	err := c.withProgress(a, 0, func() error {
		var err error
		sb, err = a.m.Create(ctx, req)
		return err
	})
	if err != nil {
		ce := explain(err, "agentlab-lite sandbox --help")
		if sb != nil {
			ce.hints = append(ce.hints, fmt.Sprintf("agentlab-lite logs %d shows what happened",
				sb.VMID()))
		}
		return ce
	}
	return c.printSandbox(a, sb.Record())
}

func cmdSandboxList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	live := fs.Bool("live", false, "hide destroyed sandboxes")
	var states listFlag
	fs.Var(&states, "state", "only this `STATE` (repeatable)")
	profile := fs.String("profile", "", "only this profile")
	labels := labelsFlag{}
	fs.Var(labels, "label", "only sandboxes with label `k=v` (repeatable)")
	_, _, err := c.args(fs, args, 0, 0)
	if err != nil {
		return err
	}
	f := agentlab.SandboxFilter{Profile: *profile, Labels: map[string]string(labels)}
	for _, s := range states {
		st := agentlab.State(strings.ToUpper(s))
		if !st.Valid() {
			return usagef(c.helpRef(), "unknown state %q", s)
		}
		f.States = append(f.States, st)
	}
	if *live && len(f.States) == 0 {
		f.States = slices.DeleteFunc(slices.Clone(agentlab.AllStates),
			func(s agentlab.State) bool { return s == agentlab.StateDestroyed })
	}
	a, err := c.open(ctx, modeCommand)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	recs, err := a.m.List(ctx, f)
	if err != nil {
		return err
	}
	slices.Reverse(recs)
	return c.printSandboxes(a, recs)
}

func (c *cli) printSandboxes(a *app, recs []agentlab.SandboxRecord) error {
	views := make([]sandboxJSON, len(recs))
	for i, r := range recs {
		views[i] = sandboxView(r, a.m.Profiles())
	}
	if c.json {
		return c.printJSON(map[string]any{"sandboxes": views})
	}
	t := newTable(c.stdout, "VMID", "NAME", "PROFILE", "STATE", "IP", "MODE", "FWGROUP",
		"LEASE", "LAST USED")
	for _, v := range views {
		t.row(strconv.Itoa(v.VMID), v.Name, v.Profile, v.State, dash(v.IP),
			dash(v.Network.Mode), dash(v.Network.FirewallGroup), tsp(v.LeaseExpiresAt),
			tsp(v.LastUsedAt))
	}
	return t.flush()
}

// oneSandbox parses "CMD VMID [ARG...]" (nargs positional arguments) with
// the given flags, runs check (when not nil) on the positional arguments
// before anything is opened, then opens the app and finds the sandbox.
func (c *cli) oneSandbox(ctx context.Context, fs *flag.FlagSet, args []string, nargs int,
	check ...func(pos []string) error) (*app, *agentlab.Sandbox, []string, error) {
	pos, _, err := c.args(fs, args, nargs, nargs)
	if err != nil {
		return nil, nil, nil, err
	}
	if strings.TrimSpace(pos[0]) == "" {
		return nil, nil, nil, usagef(c.helpRef(), "empty VMID (see agentlab-lite sandbox list)")
	}
	for _, fn := range check {
		if err := fn(pos); err != nil {
			return nil, nil, nil, err
		}
	}
	a, err := c.open(ctx, modeCommand)
	if err != nil {
		return nil, nil, nil, err
	}
	sb, err := a.sandbox(ctx, pos[0])
	if err != nil {
		a.Close(ctx)
		return nil, nil, nil, err
	}
	return a, sb, pos[1:], nil
}

func cmdSandboxShow(ctx context.Context, c *cli, args []string) error {
	a, sb, _, err := c.oneSandbox(ctx, c.flags(), args, 1)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	return c.printSandbox(a, sb.Record())
}

// lifecycle returns the command for a simple operation: pause, resume,
// stop or start.
func lifecycle(op string) func(context.Context, *cli, []string) error {
	done := map[string]string{"pause": "paused", "resume": "resumed", "stop": "stopped",
		"start": "started"}[op]
	return func(ctx context.Context, c *cli, args []string) error {
		a, sb, _, err := c.oneSandbox(ctx, c.flags(), args, 1)
		if err != nil {
			return err
		}
		defer a.Close(ctx)
		err = c.withProgress(a, sb.VMID(), func() error {
			switch op {
			case "pause":
				return sb.Pause(ctx)
			case "resume":
				return sb.Resume(ctx)
			case "stop":
				return sb.Stop(ctx)
			}
			return sb.Start(ctx)
		})
		return c.afterOp(ctx, a, sb, err, done)
	}
}

// afterOp reports an operation's outcome: "sandbox 1065 paused
// (state=SUSPENDED)", or the sandbox as JSON.
func (c *cli) afterOp(ctx context.Context, a *app, sb *agentlab.Sandbox, err error,
	done string) error {
	if err != nil {
		return explain(err, fmt.Sprintf("agentlab-lite sandbox show %d", sb.VMID()))
	}
	rec, err := sb.Refresh(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printSandbox(a, rec)
	}
	fmt.Fprintf(c.stdout, "sandbox %d %s (state=%s)\n", rec.VMID, done, rec.State)
	return nil
}

func cmdSandboxDestroy(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	force := fs.Bool("force", false, "destroy even when a running job is bound to it "+
		"(the job fails)")
	a, sb, _, err := c.oneSandbox(ctx, fs, args, 1)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	if id := sb.Record().JobID; id != "" && !*force {
		if j, err := a.m.GetJob(ctx, id); err == nil && !j.Record().Status.Terminal() {
			return failf(fmt.Sprintf("agentlab-lite sandbox destroy --force %d", sb.VMID()),
				"sandbox %d runs job %s (%s); destroying it fails the job", sb.VMID(), id,
				j.Record().Status)
		}
	}
	err = c.withProgress(a, sb.VMID(), func() error { return sb.Destroy(ctx) })
	return c.afterOp(ctx, a, sb, err, "destroyed")
}

func cmdSandboxRevert(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	force := fs.Bool("force", false, "do not ask for confirmation")
	stopped := fs.Bool("stopped", false, "leave the sandbox stopped afterwards")
	a, sb, _, err := c.oneSandbox(ctx, fs, args, 1)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	if err := c.confirmDiscard(sb, *force, "revert", ""); err != nil {
		return err
	}
	err = c.withProgress(a, sb.VMID(), func() error {
		return sb.Revert(ctx, &agentlab.RestoreOptions{Stopped: *stopped})
	})
	return c.afterOp(ctx, a, sb, err, "reverted to snapshot "+agentlab.CleanSnapshot)
}

// confirmDiscard asks before rolling back a running sandbox: on a terminal
// it wants "yes"; elsewhere it needs --force.
// more is what follows the VMID in the command to repeat with --force.
func (c *cli) confirmDiscard(sb *agentlab.Sandbox, force bool, verb, more string) error {
	st := sb.Record().State
	if force || (st != agentlab.StateRunning && st != agentlab.StateReady) {
		return nil
	}
	next := fmt.Sprintf("agentlab-lite sandbox %s --force %d%s", verb, sb.VMID(), more)
	in, ok := c.stdin.(*os.File)
	if c.json || !ok || !isTerminal(in) || !c.interactive() {
		return failf(next, "%s discards the changes of %s sandbox %d; pass --force", verb,
			st, sb.VMID())
	}
	fmt.Fprintf(c.stderr, "%s discards the changes of %s sandbox %d. Type yes to go on: ",
		verb, st, sb.VMID())
	line, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return failf(next, "%s not confirmed", verb)
	}
	return nil
}

func cmdLeaseRenew(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var ttl ttlFlag
	fs.Var(&ttl, "ttl", "new lease from now: minutes (120) or a duration (45m, 2h) (required)")
	a, sb, _, err := c.oneSandbox(ctx, fs, args, 1, func([]string) error {
		if !ttl.set || ttl.d < 0 {
			return usagef(c.helpRef(), "lease renew needs --ttl with a duration such as 90m")
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	if err := sb.RenewLease(ctx, ttl.d); err != nil {
		return explain(err, "agentlab-lite sandbox --help")
	}
	rec := sb.Record()
	if c.json {
		return c.printSandbox(a, rec)
	}
	fmt.Fprintf(c.stdout, "sandbox %d lease renewed until %s\n", rec.VMID, ts(rec.LeaseExpires))
	return nil
}
