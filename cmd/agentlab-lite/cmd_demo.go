package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// demo is one run of the demo story on an embedded simulator.
type demo struct {
	c   *cli
	a   *app
	sub *agentlab.Subscription
	dir string
	sb  *agentlab.Sandbox
}

func cmdDemo(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	keep := fs.String("keep", "", "keep the simulator's state in `DIR` (default: a "+
		"temporary directory, removed afterwards)")
	_, _, err := c.args(fs, args, 0, 0)
	if err != nil {
		return err
	}
	if err := c.act(); err != nil {
		return err
	}
	dir := *keep
	if dir == "" {
		if dir, err = os.MkdirTemp("", "agentlab-demo-*"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	srv, cfg, err := startSim(ctx, dir, simOptions{taskDelay: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(c.stdout, "simulated Proxmox VE at %s, state in %s\n", srv.URL(), dir)
	a, err := openApp(ctx, cfg, modeSupervisor, nil, c.logger())
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	sub, err := a.m.Subscribe(agentlab.SubscribeOptions{Buffer: 4096})
	if err != nil {
		return err
	}
	defer sub.Close()
	d := &demo{c: c, a: a, sub: sub, dir: dir}
	err = d.run(ctx)
	d.cleanup(ctx)
	if err != nil {
		return failf("", "demo failed: %v", err)
	}
	fmt.Fprintln(c.stdout, "\ndemo finished: every step worked")
	return nil
}

func (d *demo) run(ctx context.Context) error {
	steps := []struct {
		title string
		fn    func(context.Context) error
	}{
		{"create a sandbox from profile yolo-ephemeral", d.create},
		{"run a command in it", d.exec},
		{"copy a file in and back out", d.copy},
		{"write a marker and snapshot it", d.snapshot},
		{"change the marker", d.change},
		{"restore the snapshot: the change is undone", d.restore},
		{"run a job on a freshly generated git repository", d.job},
	}
	for i, s := range steps {
		fmt.Fprintf(d.c.stdout, "\n==> %d/%d %s\n", i+1, len(steps), s.title)
		err := s.fn(ctx)
		d.flush()
		if err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
	}
	return nil
}

// flush prints the events published so far.
func (d *demo) flush() {
	for {
		select {
		case ev := <-d.sub.C():
			fmt.Fprintln(d.c.stdout, progressLine(ev))
		default:
			return
		}
	}
}

func (d *demo) create(ctx context.Context) error {
	sb, err := d.a.m.Create(ctx, agentlab.CreateRequest{Profile: "yolo-ephemeral",
		Name: "demo", TTL: 30 * time.Minute})
	if err != nil {
		return err
	}
	d.sb = sb
	d.flush()
	rec := sb.Record()
	fmt.Fprintf(d.c.stdout, "sandbox %d %s at %s (state=%s)\n", rec.VMID, rec.Name, rec.IP,
		rec.State)
	return nil
}

// sh runs a shell command in the sandbox and returns its trimmed output.
func (d *demo) sh(ctx context.Context, cmd string) (string, error) {
	res, err := d.sb.Exec(ctx, agentlab.ExecRequest{Shell: cmd})
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("%q exited %d: %s", cmd, res.ExitCode, res.Stderr)
	}
	out := strings.TrimSpace(string(res.Stdout))
	fmt.Fprintf(d.c.stdout, "$ %s\n%s\n", cmd, out)
	return out, nil
}

func (d *demo) exec(ctx context.Context) error {
	_, err := d.sh(ctx, `echo "hello from the guest, user $(id -un)"; pwd`)
	return err
}

func (d *demo) copy(ctx context.Context) error {
	local := filepath.Join(d.dir, "upload.txt")
	want := "a file that travelled over SFTP\n"
	if err := os.WriteFile(local, []byte(want), 0o600); err != nil {
		return err
	}
	if _, err := d.sh(ctx, "mkdir -p notes"); err != nil {
		return err
	}
	if err := d.sb.Upload(ctx, local, "notes/upload.txt", nil); err != nil {
		return err
	}
	if _, err := d.sh(ctx, "cat notes/upload.txt"); err != nil {
		return err
	}
	back := filepath.Join(d.dir, "download.txt")
	if err := d.sb.Download(ctx, "notes/upload.txt", back, nil); err != nil {
		return err
	}
	got, err := os.ReadFile(back)
	if err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("downloaded %q, want %q", got, want)
	}
	fmt.Fprintln(d.c.stdout, "downloaded copy matches the original")
	return nil
}

func (d *demo) snapshot(ctx context.Context) error {
	if _, err := d.sh(ctx, "echo ORIGINAL > state.txt; cat state.txt"); err != nil {
		return err
	}
	return d.sb.SaveSnapshot(ctx, "before-change", nil)
}

func (d *demo) change(ctx context.Context) error {
	_, err := d.sh(ctx, "echo CHANGED > state.txt; cat state.txt")
	return err
}

func (d *demo) restore(ctx context.Context) error {
	if err := d.sb.RestoreSnapshot(ctx, "before-change", nil); err != nil {
		return err
	}
	d.flush()
	out, err := d.sh(ctx, "cat state.txt")
	if err != nil {
		return err
	}
	if out != "ORIGINAL" {
		return fmt.Errorf("marker reads %q after the restore, want ORIGINAL", out)
	}
	fmt.Fprintf(d.c.stdout, "marker is ORIGINAL again (sandbox state=%s)\n", d.sb.State())
	return nil
}

func (d *demo) job(ctx context.Context) error {
	repo, err := makeDemoRepo(ctx, filepath.Join(d.dir, "repo"))
	if err != nil {
		return err
	}
	j, err := d.a.m.RunJob(ctx, agentlab.JobSpec{RepoURL: repo, Profile: "yolo-ephemeral",
		Task: "count the files of the repository"})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.c.stdout, "job %s queued\n", j.ID())
	rec, err := d.waitJob(ctx, j)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.c.stdout, "job %s ended %s (exit %d): %s\n", rec.ID, rec.Status, rec.ExitCode,
		rec.Message)
	for _, art := range rec.Results {
		fmt.Fprintf(d.c.stdout, "artifact %s (%d bytes) at %s\n", art.Name, art.Size, art.Path)
		if art.Name == "result.txt" {
			data, err := readLimited(art.Path, 4096)
			if err != nil {
				return fmt.Errorf("read the job's result: %w", err)
			}
			fmt.Fprintf(d.c.stdout, "the job's result: %s\n", strings.TrimSpace(string(data)))
		}
	}
	if rec.Status != agentlab.JobCompleted {
		return fmt.Errorf("job ended %s: %s", rec.Status, rec.Message)
	}
	return nil
}

// waitJob prints the job's events until it ends.
func (d *demo) waitJob(ctx context.Context, j *agentlab.Job) (agentlab.JobRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		select {
		case ev := <-d.sub.C():
			fmt.Fprintln(d.c.stdout, progressLine(ev))
		case <-time.After(100 * time.Millisecond):
			rec, err := j.Refresh(ctx)
			if err != nil || rec.Status.Terminal() {
				return rec, err
			}
		case <-ctx.Done():
			return agentlab.JobRecord{}, ctx.Err()
		}
	}
}

// makeDemoRepo creates a small git repository with one commit and returns
// its path, which the simulated guest (a local process) clones.
func makeDemoRepo(ctx context.Context, dir string) (string, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return "", errors.New("git is not installed; the job step clones a repository")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	files := map[string]string{"README.md": "# demo\n", "main.go": "package main\n",
		"notes.txt": "generated by agentlab-lite demo\n"}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return "", err
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "."},
		{"-c", "user.name=demo", "-c", "user.email=demo@example.invalid", "commit", "-q",
			"-m", "demo"}} {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("git %s: %v: %s", args[0], err, stderr.String())
		}
	}
	return dir, nil
}

// cleanup destroys the demo sandbox, whatever happened before.
func (d *demo) cleanup(ctx context.Context) {
	fmt.Fprintln(d.c.stdout, "\n==> clean up")
	if d.sb != nil {
		if err := d.sb.Destroy(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintf(d.c.stdout, "destroy sandbox %d: %v\n", d.sb.VMID(), err)
		}
	}
	d.flush()
	st, err := d.a.m.Status(context.WithoutCancel(ctx))
	if err == nil {
		fmt.Fprintf(d.c.stdout, "sandboxes destroyed: %d, jobs completed: %d\n",
			st.SandboxesByState[agentlab.StateDestroyed], st.JobsByStatus[agentlab.JobCompleted])
	}
}
