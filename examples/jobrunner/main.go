// Command jobrunner runs a job with agentlab: a task delivered to a fresh
// sandbox, its log followed live, its artifacts downloaded and the sandbox
// torn down, here on the pvesim simulator with a SQLite store.
//
// Run it with: go run ./examples/jobrunner
package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
	"github.com/agentlab-sdk/agentlab/sshx"
	"github.com/agentlab-sdk/agentlab/store"
)

// profile runs a plain shell command as the job: it reads the task from
// $AGENTLAB_TASK_FILE and leaves an artifact in the work directory.
var profile = agentlab.Profile{
	Name: "worker", TemplateVMID: 9000,
	Job: agentlab.JobSettings{
		Command: `echo "working on: $(cat "$AGENTLAB_TASK_FILE")"
for i in 1 2 3; do echo "step $i"; done
echo 42 > answer.txt`,
		Artifacts: []string{"answer.txt"},
	},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "jobrunner-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sim, err := pvesim.NewServer(pvesim.Config{Dir: filepath.Join(dir, "sim")})
	if err != nil {
		return err
	}
	defer sim.Close()
	if err := sim.AddTemplate("pve1", 9000, "debian-13", nil); err != nil {
		return err
	}
	st, err := store.Open(ctx, filepath.Join(dir, "agentlab.db"), nil)
	if err != nil {
		return err
	}
	defer st.Close()
	m, guest, err := newManager(ctx, sim, st, filepath.Join(dir, "artifacts"))
	if err != nil {
		return err
	}
	defer guest.Close()
	defer m.Close(context.Background())
	return runJob(ctx, m)
}

func newManager(ctx context.Context, sim *pvesim.Server, st agentlab.Store, artifacts string) (
	*agentlab.Manager, *sshx.Transport, error) {
	hv, err := proxmox.New(ctx, proxmox.Config{URL: sim.URL(), TokenID: sim.TokenID(),
		TokenSecret: sim.TokenSecret(), Fingerprint: sim.Fingerprint(),
		PollInterval: 20 * time.Millisecond})
	if err != nil {
		return nil, nil, err
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return nil, nil, err
	}
	guest := sshx.New(sshx.Config{Signer: signer, Dial: sim.Dialer()})
	profiles, err := agentlab.NewProfileSet(profile)
	if err != nil {
		return nil, nil, err
	}
	m, err := agentlab.New(ctx, agentlab.Config{Store: st, Hypervisor: hv, Guest: guest,
		Profiles: profiles, ArtifactDir: artifacts, JobPollInterval: 100 * time.Millisecond,
		SSHPublicKeys: []string{string(ssh.MarshalAuthorizedKey(signer.PublicKey()))}})
	if err != nil {
		guest.Close()
		return nil, nil, err
	}
	return m, guest, nil
}

func runJob(ctx context.Context, m *agentlab.Manager) error {
	// Subscribe before starting so that no log line is missed.
	sub, err := m.Subscribe(agentlab.SubscribeOptions{EventFilter: agentlab.EventFilter{
		Kinds: []string{agentlab.EventJobLog, agentlab.EventJobStep}}})
	if err != nil {
		return err
	}
	defer sub.Close()
	j, err := m.RunJob(ctx, agentlab.JobSpec{Profile: "worker",
		Task: "find the answer", Secrets: map[string]string{"API_TOKEN": "never stored"}})
	if err != nil {
		return err
	}
	fmt.Printf("job %s queued\n", j.ID())
	rec, err := follow(ctx, j, sub)
	if err != nil {
		return err
	}
	fmt.Printf("job %s ended %s (exit %d)\n", rec.ID, rec.Status, rec.ExitCode)
	for _, a := range rec.Results {
		data, _ := os.ReadFile(a.Path)
		fmt.Printf("artifact %s (%d bytes): %s\n", a.Name, a.Size, firstLine(data))
	}
	sb, err := m.Get(ctx, rec.VMID)
	if err != nil {
		return err
	}
	fmt.Printf("sandbox %d after the job: %s\n", rec.VMID, sb.State())
	if rec.Status != agentlab.JobCompleted {
		return fmt.Errorf("job ended %s: %s", rec.Status, rec.Message)
	}
	return nil
}

// follow prints the job's steps and log lines until it ends.
func follow(ctx context.Context, j *agentlab.Job, sub *agentlab.Subscription) (
	agentlab.JobRecord, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case ev := <-sub.C():
			if ev.JobID != j.ID() {
				continue
			}
			if ev.Kind == agentlab.EventJobLog {
				fmt.Printf("  | %s\n", ev.Message)
			} else {
				fmt.Printf("  step %v\n", ev.Data["step"])
			}
		case <-tick.C:
			rec, err := j.Refresh(ctx)
			if err != nil || rec.Status.Terminal() {
				return rec, err
			}
		case <-ctx.Done():
			return agentlab.JobRecord{}, ctx.Err()
		}
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}
