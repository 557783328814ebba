package agentlab_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
)

// newExampleManager builds a Manager on the in-memory Store and the fake
// hypervisor, with one profile named "dev".
func newExampleManager() (*agentlab.Manager, func()) {
	hv, err := agentlabtest.NewHypervisor(agentlabtest.HypervisorOptions{})
	if err != nil {
		log.Fatal(err)
	}
	profiles, err := agentlab.NewProfileSet(agentlab.Profile{
		Name: "dev", TemplateVMID: 9000,
		Behavior: agentlab.Behavior{TTLMinutesDefault: 60},
		Job:      agentlab.JobSettings{Command: `echo "task: $(cat "$AGENTLAB_TASK_FILE")"`},
	})
	if err != nil {
		log.Fatal(err)
	}
	artifacts, err := os.MkdirTemp("", "agentlab-example-")
	if err != nil {
		log.Fatal(err)
	}
	m, err := agentlab.New(context.Background(), agentlab.Config{
		Store: agentlabtest.NewStore(), Hypervisor: hv, Guest: hv.Guest(),
		Profiles: profiles, ArtifactDir: artifacts, JobPollInterval: 10 * time.Millisecond,
	})
	if err != nil {
		log.Fatal(err)
	}
	return m, func() {
		_ = m.Close(context.Background())
		_ = hv.Close()
		_ = os.RemoveAll(artifacts)
	}
}

func Example() {
	m, done := newExampleManager()
	defer done()
	ctx := context.Background()

	sb, err := m.Create(ctx, agentlab.CreateRequest{Profile: "dev", Name: "demo"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sb.VMID(), sb.State())

	res, err := sb.Exec(ctx, agentlab.ExecRequest{Shell: "echo hello from the guest"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(res.Stdout))

	if err := sb.Destroy(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(sb.State())
	// Output:
	// 1000 RUNNING
	// hello from the guest
	// DESTROYED
}

func ExampleSandbox_RestoreSnapshot() {
	m, done := newExampleManager()
	defer done()
	ctx := context.Background()
	sb, err := m.Create(ctx, agentlab.CreateRequest{Profile: "dev"})
	if err != nil {
		log.Fatal(err)
	}
	sh := func(cmd string) string {
		res, err := sb.Exec(ctx, agentlab.ExecRequest{Shell: cmd})
		if err != nil {
			log.Fatal(err)
		}
		return strings.TrimSpace(string(res.Stdout))
	}
	fmt.Println(sh("echo ORIGINAL > marker; cat marker"))
	if err := sb.SaveSnapshot(ctx, "before", nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println(sh("echo CHANGED > marker; cat marker"))
	if err := sb.RestoreSnapshot(ctx, "before", nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println(sh("cat marker"), sb.State())
	// Output:
	// ORIGINAL
	// CHANGED
	// ORIGINAL RUNNING
}

func ExampleSandbox_RenewLease() {
	m, done := newExampleManager()
	defer done()
	ctx := context.Background()
	sb, err := m.Create(ctx, agentlab.CreateRequest{Profile: "dev"})
	if err != nil {
		log.Fatal(err)
	}
	if err := sb.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	err = sb.RenewLease(ctx, 90*time.Minute)
	var ise *agentlab.InvalidStateError
	if errors.As(err, &ise) {
		fmt.Println(ise.State, "->", err)
	}
	// Output:
	// STOPPED -> renew lease of sandbox 1000: cannot renew lease in STOPPED state; valid states: READY, RUNNING, SUSPENDED, COMPLETED, FAILED, TIMEOUT
}

func ExampleManager_RunJob() {
	m, done := newExampleManager()
	defer done()
	ctx := context.Background()
	job, err := m.RunJob(ctx, agentlab.JobSpec{Profile: "dev", Task: "fix the bug"})
	if err != nil {
		log.Fatal(err)
	}
	rec, err := job.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.Status, rec.ExitCode)
	if err := job.Logs(ctx, os.Stdout, agentlab.LogOptions{}); err != nil {
		log.Fatal(err)
	}
	// Output:
	// COMPLETED 0
	// task: fix the bug
}

func ExampleManager_Subscribe() {
	m, done := newExampleManager()
	defer done()
	ctx := context.Background()
	sub, err := m.Subscribe(agentlab.SubscribeOptions{EventFilter: agentlab.EventFilter{
		Kinds: []string{agentlab.EventSandboxState}}})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	if _, err := m.Create(ctx, agentlab.CreateRequest{Profile: "dev"}); err != nil {
		log.Fatal(err)
	}
	for range 4 {
		ev := <-sub.C()
		fmt.Println(ev.Data["from_state"], "->", ev.Data["to_state"])
	}
	// Output:
	// REQUESTED -> PROVISIONING
	// PROVISIONING -> BOOTING
	// BOOTING -> READY
	// READY -> RUNNING
}
