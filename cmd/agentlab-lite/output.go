package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// printJSON writes v as indented JSON.
func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// interactive reports whether progress lines may be shown: stdout is a
// terminal and the output is not JSON.
func (c *cli) interactive() bool {
	if c.json {
		return false
	}
	if c.forceTTY != nil {
		return *c.forceTTY
	}
	f, ok := c.stdout.(*os.File)
	return ok && isTerminal(f)
}

// ts formats a time as the CLI prints it everywhere: RFC 3339 in UTC with
// nanoseconds, "-" for the zero time.
func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// tsPtr is ts for JSON: nil for the zero time, so the key is omitted.
func tsPtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// count writes "1 file", "2 files": n and the noun, plural unless n is 1.
func count[N int | int64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// table writes aligned columns; call flush when done.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cols ...string) {
	for i, c := range cols {
		cols[i] = oneLine(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// kv writes "Key: value" lines in order.
func kv(w io.Writer, pairs ...string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(w, "%s: %s\n", pairs[i], pairs[i+1])
	}
}

// sandboxJSON is the stable JSON form of a sandbox, with the predecessor's
// field names.
type sandboxJSON struct {
	VMID           int               `json:"vmid"`
	Name           string            `json:"name"`
	Profile        string            `json:"profile"`
	State          string            `json:"state"`
	IP             string            `json:"ip,omitempty"`
	Node           string            `json:"node,omitempty"`
	Network        networkJSON       `json:"network"`
	Keepalive      bool              `json:"keepalive"`
	Labels         map[string]string `json:"labels,omitempty"`
	JobID          string            `json:"job_id,omitempty"`
	LeaseExpiresAt *time.Time        `json:"lease_expires_at,omitempty"`
	LastUsedAt     *time.Time        `json:"last_used_at,omitempty"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
	LastError      string            `json:"last_error,omitempty"`
}

type networkJSON struct {
	Mode          string `json:"mode"`
	Firewall      bool   `json:"firewall,omitempty"`
	FirewallGroup string `json:"firewall_group,omitempty"`
}

// sandboxView joins a record with what its profile says about the
// firewall (the backend always enables the VM firewall; the group comes
// from the profile).
func sandboxView(rec agentlab.SandboxRecord, profiles *agentlab.ProfileSet) sandboxJSON {
	v := sandboxJSON{
		VMID: rec.VMID, Name: rec.Name, Profile: rec.Profile, State: string(rec.State),
		IP: rec.IP, Node: rec.Node, Keepalive: rec.Keepalive, Labels: rec.Labels,
		JobID: rec.JobID, LeaseExpiresAt: tsPtr(rec.LeaseExpires),
		LastUsedAt: tsPtr(rec.LastActivity), CreatedAt: rec.CreatedAt.UTC(),
		UpdatedAt: rec.UpdatedAt.UTC(), LastError: rec.LastError,
		Network: networkJSON{Mode: rec.NetworkMode, Firewall: rec.NetworkMode != ""},
	}
	if profiles != nil {
		if p, err := profiles.Get(rec.Profile); err == nil {
			v.Network.FirewallGroup = p.Network.FirewallGroup
		}
	}
	return v
}

// writeSandbox prints the key/value block of "sandbox show".
func writeSandbox(w io.Writer, v sandboxJSON) {
	fw := "-"
	if v.Network.Firewall {
		fw = "true"
	}
	kv(w, "VMID", fmt.Sprint(v.VMID), "Name", v.Name, "Profile", v.Profile,
		"State", v.State, "IP", dash(v.IP), "Workspace", "-",
		"Network Mode", dash(v.Network.Mode), "Firewall", fw,
		"Firewall Group", dash(v.Network.FirewallGroup),
		"Keepalive", fmt.Sprint(v.Keepalive), "Lease Expires", tsp(v.LeaseExpiresAt),
		"Last Used At", tsp(v.LastUsedAt), "Created At", ts(v.CreatedAt),
		"Updated At", ts(v.UpdatedAt), "Node", dash(v.Node), "Job", dash(v.JobID),
		"Labels", dash(labelString(v.Labels)), "Last Error", dash(oneLine(v.LastError)))
}

func tsp(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return ts(*t)
}

func labelString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, ",")
}

// printJSONLine writes v as one line of JSON (for streams of events).
func (c *cli) printJSONLine(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}
