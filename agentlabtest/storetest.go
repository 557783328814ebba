package agentlabtest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/stretchr/testify/require"
)

// RunStoreTests runs the conformance suite for [agentlab.Store] as subtests
// of t. newStore must return a fresh, empty store on each call; the suite
// closes every store it gets (a second Close by the caller may then fail
// with ErrClosed, which is expected). Subtests start goroutines, so run
// the suite under -race.
//
// The suite checks the interface contract only: round trips of every
// field (times compared with Equal, nil and empty maps and slices treated
// alike), conflicts among live sandboxes and reuse after DESTROYED,
// atomic updates under contention, updates with events stored together or
// not at all, the error sentinels, the filters, event IDs and Summary.
func RunStoreTests(t *testing.T, newStore func(t *testing.T) agentlab.Store) {
	t.Helper()
	open := func(t *testing.T) agentlab.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil && !errors.Is(err, agentlab.ErrClosed) {
				t.Errorf("close store: %v", err)
			}
		})
		return s
	}
	for _, tc := range storeTests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open(t)) })
	}
}

// storeTest is one subtest of RunStoreTests.
type storeTest struct {
	name string
	run  func(t *testing.T, s agentlab.Store)
}

// storeTests lists the subtests in the order they run.
var storeTests = []storeTest{
	{"SandboxRoundTrip", testSandboxRoundTrip},
	{"SandboxCreateSetsFields", testSandboxCreateSets},
	{"SandboxConflicts", testSandboxConflicts},
	{"SandboxReuseAfterDestroy", testSandboxReuse},
	{"SandboxUpdate", testSandboxUpdate},
	{"SandboxUpdateFnError", testSandboxUpdateFnError},
	{"SandboxUpdateConcurrent", testSandboxUpdateConcurrent},
	{"SandboxCopies", testSandboxCopies},
	{"SandboxFilters", testSandboxFilters},
	{"NotFound", testNotFound},
	{"JobRoundTrip", testJobRoundTrip},
	{"JobConflict", testJobConflict},
	{"JobUpdate", testJobUpdate},
	{"JobFilters", testJobFilters},
	{"EventIDs", testEventIDs},
	{"EventFilters", testEventFilters},
	{"EventConcurrentAppend", testEventConcurrent},
	{"SandboxUpdateEvents", testUpdateEvents},
	{"SandboxUpdateEventsFailures", testUpdateEventsFailures},
	{"SandboxUpdateEventsConcurrent", testUpdateEventsConcurrent},
	{"Summary", testSummary},
	{"Closed", testClosed},
}

// zone is a non-UTC location, so that round trips that only compare
// instants (time.Time.Equal) are exercised.
var zone = time.FixedZone("UTC+0530", 5*3600+30*60)

// baseTime is a fixed instant with nanoseconds.
var baseTime = time.Date(2025, 3, 4, 5, 6, 7, 123456789, zone)

// normTime makes t comparable with reflect.DeepEqual: UTC, no monotonic
// reading.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// requireErrorIs fails unless err matches every target.
func requireErrorIs(t *testing.T, err error, targets ...error) {
	t.Helper()
	require.Error(t, err)
	for _, target := range targets {
		require.ErrorIs(t, err, target)
	}
}

// requireAllSet fails when a field of the struct v is its zero value, so
// that the round-trip fixtures cover every field, also fields added later.
func requireAllSet(t *testing.T, v any) {
	t.Helper()
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		require.False(t, rv.Field(i).IsZero(), "fixture leaves %s.%s unset",
			rv.Type().Name(), rv.Type().Field(i).Name)
	}
}
