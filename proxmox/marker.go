package proxmox

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Ownership marker: the description and tags stamped on every VM that
// Provision creates.
const (
	// TagAgentlab is the tag every provisioned VM carries.
	TagAgentlab = "agentlab"

	markerOwner   = "agentlab-owner: "
	markerSandbox = "agentlab-sandbox: "
	ownerTagStem  = "agentlab-owner-"
	maxTagLen     = 60
)

// markerDescription is the VM description that marks it as owner's sandbox.
func markerDescription(owner, sandbox string) string {
	return markerOwner + owner + "\n" + markerSandbox + sandbox + "\n"
}

// parseMarker reads the owner and sandbox from a VM description; both are
// empty when the description carries no marker.
func parseMarker(desc string) (owner, sandbox string) {
	for line := range strings.Lines(desc) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, markerOwner); ok && owner == "" {
			owner = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, markerSandbox); ok && sandbox == "" {
			sandbox = strings.TrimSpace(v)
		}
	}
	return owner, sandbox
}

// OwnerTag is the PVE tag Provision adds for owner. PVE tags allow only
// [a-z0-9_] first and [a-z0-9_+.-] after, so other characters become "-"
// and a lossy or long mapping gets a short hash of owner, keeping distinct
// owners apart.
func OwnerTag(owner string) string {
	var b strings.Builder
	lossy := false
	for _, r := range strings.ToLower(owner) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
			lossy = true
		}
	}
	tag := ownerTagStem + b.String()
	lossy = lossy || strings.ToLower(owner) != owner
	if lossy || len(tag) > maxTagLen {
		sum := sha256.Sum256([]byte(owner))
		tag = tag[:min(len(tag), maxTagLen-9)] + "-" + hex.EncodeToString(sum[:4])
	}
	return tag
}

// splitTags splits PVE's tag list ("a;b", also "a,b" or "a b").
func splitTags(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ',' || r == ' ' })
}

// vmConfig is a VM config as PVE sends it: strings for property strings,
// numbers for integers and booleans.
type vmConfig map[string]any

// str returns key as a string, whatever JSON type PVE used.
func (c vmConfig) str(key string) string {
	switch v := c[key].(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}
