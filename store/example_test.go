package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/store"
)

// A fixed clock keeps the output stable.
func fixedClock() time.Time { return time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC) }

func ExampleNewMemory() {
	ctx := context.Background()
	s := store.NewMemory(&store.Options{Now: fixedClock})
	defer s.Close()

	rec := agentlab.SandboxRecord{VMID: 1065, Name: "demo", Profile: "yolo",
		State: agentlab.StateRequested, Labels: map[string]string{"team": "infra"}}
	if err := s.CreateSandbox(ctx, &rec); err != nil {
		fmt.Println(err)
		return
	}
	// UpdateSandbox is a read-modify-write; concurrent updates never lose one.
	updated, err := s.UpdateSandbox(ctx, 1065, func(r *agentlab.SandboxRecord) error {
		r.State = agentlab.StateReady
		r.IP = "10.0.0.5"
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(updated.State, updated.IP, "version", updated.Version)

	list, err := s.ListSandboxes(ctx, agentlab.SandboxFilter{
		Labels: map[string]string{"team": "infra"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range list {
		fmt.Println(r.VMID, r.Name, r.State, r.UpdatedAt.Format(time.RFC3339))
	}
	// Output:
	// READY 10.0.0.5 version 2
	// 1065 demo READY 2025-06-01T12:00:00Z
}

func ExampleMemory_CreateSandbox_reuse() {
	ctx := context.Background()
	s := store.NewMemory(nil)
	defer s.Close()

	first := agentlab.SandboxRecord{VMID: 1065, Name: "a", State: agentlab.StateReady}
	_ = s.CreateSandbox(ctx, &first)

	second := agentlab.SandboxRecord{VMID: 1065, Name: "b", State: agentlab.StateRequested}
	err := s.CreateSandbox(ctx, &second)
	fmt.Println(errors.Is(err, agentlab.ErrVMIDConflict))

	// Once the first is destroyed its VMID is free; its row stays as history.
	_, _ = s.UpdateSandbox(ctx, 1065, func(r *agentlab.SandboxRecord) error {
		r.State = agentlab.StateDestroyed
		return nil
	})
	fmt.Println(s.CreateSandbox(ctx, &second))
	live, _ := s.GetSandbox(ctx, 1065)
	all, _ := s.ListSandboxes(ctx, agentlab.SandboxFilter{})
	fmt.Println(live.Name, len(all))
	// Output:
	// true
	// <nil>
	// b 2
}

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "agentlab-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := store.Open(ctx, filepath.Join(dir, "state.db"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	for _, kind := range []string{agentlab.EventJobCreated, agentlab.EventJobRunning} {
		ev := agentlab.Event{Kind: kind, JobID: "job_0123456789abcdef"}
		if err := s.AppendEvent(ctx, &ev); err != nil {
			fmt.Println(err)
			return
		}
	}
	evs, err := s.ListEvents(ctx, agentlab.EventFilter{JobID: "job_0123456789abcdef",
		Limit: 1, Last: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(evs[0].ID, evs[0].Kind)
	// Output:
	// 2 job.running
}
