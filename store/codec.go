package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// The range of times that fit in int64 unix nanoseconds (1677 to 2262).
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// checkTime reports a non-zero time outside the storable range.
func checkTime(field string, t time.Time) error {
	if t.IsZero() || (!t.Before(minTime) && !t.After(maxTime)) {
		return nil
	}
	return fmt.Errorf("check %s %s: outside years 1678-2261: %w",
		field, t.Format(time.RFC3339), agentlab.ErrInvalidArgument)
}

// normTime returns t in UTC without its monotonic reading, the form both
// stores return.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// encTime encodes t as unix nanoseconds, or NULL for the zero time.
func encTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// decTime is the inverse of encTime.
func decTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// encJSON encodes v as JSON text, or NULL when v is nil.
func encJSON(v any, isNil bool) (any, error) {
	if isNil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	return string(b), nil
}

// decJSON decodes s into v; NULL leaves v untouched (nil).
func decJSON(s sql.NullString, v any) error {
	if !s.Valid {
		return nil
	}
	if err := json.Unmarshal([]byte(s.String), v); err != nil {
		return fmt.Errorf("decode json: %w", err)
	}
	return nil
}

// checkSandbox validates the fields the store relies on.
func checkSandbox(r *agentlab.SandboxRecord) error {
	if r.VMID <= 0 {
		return fmt.Errorf("check vmid %d: %w", r.VMID, agentlab.ErrInvalidArgument)
	}
	if !r.State.Valid() {
		return fmt.Errorf("check state %q: %w", r.State, agentlab.ErrInvalidArgument)
	}
	for _, c := range []struct {
		name string
		t    time.Time
	}{
		{"lease_expires", r.LeaseExpires}, {"last_activity", r.LastActivity},
		{"op_started", r.OpStarted}, {"created_at", r.CreatedAt},
	} {
		if err := checkTime(c.name, c.t); err != nil {
			return err
		}
	}
	return nil
}

// normSandbox puts r's times in the stored form.
func normSandbox(r *agentlab.SandboxRecord) {
	r.LeaseExpires = normTime(r.LeaseExpires)
	r.LastActivity = normTime(r.LastActivity)
	r.OpStarted = normTime(r.OpStarted)
	r.CreatedAt = normTime(r.CreatedAt)
	r.UpdatedAt = normTime(r.UpdatedAt)
}

// checkJob validates the fields the store relies on.
func checkJob(r *agentlab.JobRecord) error {
	if r.ID == "" {
		return fmt.Errorf("check job id: empty: %w", agentlab.ErrInvalidArgument)
	}
	for _, c := range []struct {
		name string
		t    time.Time
	}{
		{"created_at", r.CreatedAt}, {"started_at", r.StartedAt},
		{"completed_at", r.CompletedAt}, {"deadline", r.Deadline},
		{"heartbeat", r.Heartbeat},
	} {
		if err := checkTime(c.name, c.t); err != nil {
			return err
		}
	}
	return nil
}

// normJob puts r's times in the stored form.
func normJob(r *agentlab.JobRecord) {
	r.CreatedAt = normTime(r.CreatedAt)
	r.StartedAt = normTime(r.StartedAt)
	r.CompletedAt = normTime(r.CompletedAt)
	r.UpdatedAt = normTime(r.UpdatedAt)
	r.Deadline = normTime(r.Deadline)
	r.Heartbeat = normTime(r.Heartbeat)
}

// cloneJob returns a deep copy of r.
func cloneJob(r agentlab.JobRecord) agentlab.JobRecord {
	if r.Env != nil {
		env := make(map[string]string, len(r.Env))
		for k, v := range r.Env {
			env[k] = v
		}
		r.Env = env
	}
	if r.Artifacts != nil {
		r.Artifacts = append([]string{}, r.Artifacts...)
	}
	if r.SecretNames != nil {
		r.SecretNames = append([]string{}, r.SecretNames...)
	}
	if r.Results != nil {
		r.Results = append([]agentlab.Artifact{}, r.Results...)
	}
	return r
}

// prepareEvent fills the defaults of a new event and returns its data as
// JSON (nil for no data).
func prepareEvent(ev *agentlab.Event, now time.Time) (any, error) {
	if ev.Kind == "" {
		return nil, fmt.Errorf("check event kind: empty: %w", agentlab.ErrInvalidArgument)
	}
	if ev.Time.IsZero() {
		ev.Time = now
	}
	if err := checkTime("event time", ev.Time); err != nil {
		return nil, err
	}
	if ev.SchemaVersion == 0 {
		ev.SchemaVersion = agentlab.EventSchemaVersion
	}
	return encJSON(ev.Data, ev.Data == nil)
}
