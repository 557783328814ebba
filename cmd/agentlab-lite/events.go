package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// describe renders an event's payload as the short message of the logs
// format: "REQUESTED -> PROVISIONING", "ready in 12.6s".
func describe(ev agentlab.Event) string {
	d := ev.Data
	name := str(d, "name")
	switch ev.Kind {
	case agentlab.EventSandboxState:
		s := str(d, "from_state") + " -> " + str(d, "to_state")
		if ev.Message != "" {
			s += " (" + ev.Message + ")"
		}
		return s
	case agentlab.EventSandboxReady:
		return "ready in " + dur(d)
	case agentlab.EventSandboxSSHReady:
		return "ssh ready in " + dur(d)
	case agentlab.EventSandboxSSHFailed:
		return fmt.Sprintf("ssh not ready after %s: %s", dur(d), str(d, "error"))
	case agentlab.EventSnapshotCreated:
		if b, _ := d["memory"].(bool); b {
			return "snapshot " + name + " created (with memory)"
		}
		return "snapshot " + name + " created"
	case agentlab.EventSnapshotFailed:
		return fmt.Sprintf("snapshot %s failed: %s", name, str(d, "error"))
	case agentlab.EventSnapshotRestored:
		return fmt.Sprintf("snapshot %s restored in %s", name, dur(d))
	case agentlab.EventSnapshotRestoreFailed:
		return fmt.Sprintf("restore of snapshot %s failed: %s", name, str(d, "error"))
	case agentlab.EventSnapshotDeleted:
		return "snapshot " + name + " deleted"
	case agentlab.EventLeaseRenewed:
		return "lease renewed until " + str(d, "expires_at")
	case agentlab.EventLeaseExpired:
		return fmt.Sprintf("%s (%s)", ev.Message, str(d, "action"))
	case agentlab.EventIdleStop:
		return fmt.Sprintf("stopped after %v minutes idle", num(d, "idle_for_minutes"))
	case agentlab.EventReconciled:
		return fmt.Sprintf("%s: %s -> %s", str(d, "finding"), ev.Message, dash(str(d, "action")))
	}
	return describeOther(ev)
}

// describeOther covers the operation and job events.
func describeOther(ev agentlab.Event) string {
	d := ev.Data
	op, outcome, ok := opOutcome(ev.Kind)
	switch {
	case ok && outcome == "completed":
		return fmt.Sprintf("%s completed in %s", op, dur(d))
	case ok && outcome == "failed":
		return fmt.Sprintf("%s failed after %s: %s", op, dur(d), str(d, "error"))
	case ev.Kind == agentlab.EventJobCreated:
		return "job created (profile " + str(d, "profile") + ")"
	case ev.Kind == agentlab.EventJobRunning:
		return fmt.Sprintf("job running in sandbox %d", ev.VMID)
	case ev.Kind == agentlab.EventJobStep:
		if e := str(d, "error"); e != "" {
			return "step " + str(d, "step") + ": " + e
		}
		return "step " + str(d, "step")
	case ev.Kind == agentlab.EventJobArtifact:
		return fmt.Sprintf("artifact %s (%v bytes)", str(d, "name"), num(d, "size"))
	}
	return ev.Message
}

// opOutcome splits "sandbox.pause.completed" into "pause" and "completed".
func opOutcome(kind string) (op, outcome string, ok bool) {
	parts := strings.Split(kind, ".")
	if len(parts) != 3 || parts[0] != "sandbox" {
		return "", "", false
	}
	return parts[1], parts[2], parts[2] == "completed" || parts[2] == "failed"
}

func str(d map[string]any, k string) string {
	if v, ok := d[k]; ok && v != nil {
		return fmt.Sprint(v)
	}
	return ""
}

// num returns a numeric payload value as an int64 when it is whole.
func num(d map[string]any, k string) any {
	switch v := d[k].(type) {
	case float64:
		if v == float64(int64(v)) {
			return int64(v)
		}
		return v
	case nil:
		return 0
	default:
		return v
	}
}

// dur renders the duration_ms payload field.
func dur(d map[string]any) string {
	var ms float64
	switch v := d["duration_ms"].(type) {
	case float64:
		ms = v
	case int64:
		ms = float64(v)
	case int:
		ms = float64(v)
	}
	return time.Duration(ms * float64(time.Millisecond)).String()
}

// eventJSON is the stable JSON form of an event, with the predecessor's
// field names: "msg" is the message the logs line shows and "json" the
// event's structured payload.
type eventJSON struct {
	ID            int64          `json:"id"`
	Time          time.Time      `json:"ts"`
	Kind          string         `json:"kind"`
	SchemaVersion int            `json:"schema_version,omitempty"`
	VMID          int            `json:"sandbox_vmid,omitempty"`
	JobID         string         `json:"job_id,omitempty"`
	Message       string         `json:"msg,omitempty"`
	Data          map[string]any `json:"json,omitempty"`
}

// eventView is the JSON form of ev.
func eventView(ev agentlab.Event) eventJSON {
	return eventJSON{ID: ev.ID, Time: ev.Time.UTC(), Kind: ev.Kind,
		SchemaVersion: ev.SchemaVersion, VMID: ev.VMID, JobID: ev.JobID,
		Message: describe(ev), Data: ev.Data}
}

// eventViews is the JSON form of a list of events; never nil, so that an
// empty list prints as [].
func eventViews(evs []agentlab.Event) []eventJSON {
	out := make([]eventJSON, 0, len(evs))
	for _, ev := range evs {
		out = append(out, eventView(ev))
	}
	return out
}

// writeLogLine prints one event in the logs format:
// "TIME<TAB>KIND<TAB>job=ID<TAB>MESSAGE".
func writeLogLine(w io.Writer, ev agentlab.Event) {
	fmt.Fprintf(w, "%s\t%s\tjob=%s\t%s\n", ts(ev.Time), ev.Kind, dash(ev.JobID),
		oneLine(describe(ev)))
}

// progressLine is one live progress line on a terminal.
func progressLine(ev agentlab.Event) string {
	who := ""
	if ev.VMID != 0 {
		who = fmt.Sprintf("sandbox %d ", ev.VMID)
	}
	if ev.Kind == agentlab.EventJobLog {
		return fmt.Sprintf("  | %s", ev.Message)
	}
	return fmt.Sprintf("  %s %s%s: %s", ev.Time.Local().Format("15:04:05"), who, ev.Kind,
		oneLine(describe(ev)))
}
