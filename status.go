package agentlab

import (
	"context"
	"fmt"
)

// Status is an overview of the sandboxes and jobs in the Store.
type Status struct {
	Summary

	// RecentFailures holds the newest failure events, oldest first.
	RecentFailures []Event
}

// failureKinds are the event kinds Status reports as failures.
var failureKinds = []string{
	EventSandboxProvisionFail, EventSandboxSSHFailed, EventSandboxPauseFailed,
	EventSandboxResumeFailed, EventSandboxStopFailed, EventSandboxStartFailed,
	EventSandboxDestroyFailed, EventSnapshotFailed, EventSnapshotRestoreFailed,
	EventJobFailed, EventJobTimeout,
}

// Status counts sandboxes per state and network mode and jobs per status,
// and lists the ten most recent failures.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	sum, err := m.store.Summary(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	fails, err := m.store.ListEvents(ctx, EventFilter{Kinds: failureKinds, Limit: 10,
		Last: true})
	if err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	return Status{Summary: sum, RecentFailures: fails}, nil
}
