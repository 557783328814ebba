package proxmox

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// FuzzParseMarker: any VM description parses without a panic, and the
// marker Provision writes reads back as the owner and sandbox it names.
func FuzzParseMarker(f *testing.F) {
	f.Add("mgr-1", "sb-1065", "")
	f.Add("a b", "x", "agentlab-owner: other\n")
	f.Add("", "", "agentlab-sandbox: \n\r\n")
	f.Fuzz(func(t *testing.T, owner, sandbox, desc string) {
		parseMarker(desc)
		if strings.ContainsAny(owner+sandbox, "\n\r") || strings.TrimSpace(owner) != owner ||
			strings.TrimSpace(sandbox) != sandbox || owner == "" || sandbox == "" {
			return
		}
		o, s := parseMarker(markerDescription(owner, sandbox) + desc)
		if o != owner || s != sandbox {
			t.Fatalf("marker of (%q, %q) read back as (%q, %q)", owner, sandbox, o, s)
		}
	})
}

// pveTag is the syntax PVE accepts for a tag.
var pveTag = regexp.MustCompile(`^[a-z0-9_][a-z0-9_+.-]*$`)

// FuzzOwnerTag: every owner maps to a valid PVE tag of at most 60
// characters that splitTags keeps whole, the same tag every time.
func FuzzOwnerTag(f *testing.F) {
	for _, s := range []string{"mgr-1", "Mgr 1", "", strings.Repeat("x", 80), "ü;,", "a;b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, owner string) {
		tag := OwnerTag(owner)
		if !pveTag.MatchString(tag) || len(tag) > maxTagLen {
			t.Fatalf("owner %q: invalid tag %q", owner, tag)
		}
		if got := splitTags("x;" + tag + ";y"); len(got) != 3 || got[1] != tag {
			t.Fatalf("owner %q: tag %q split as %q", owner, tag, got)
		}
		if OwnerTag(owner) != tag {
			t.Fatalf("owner %q: tag not deterministic", owner)
		}
	})
}

// FuzzParseFingerprint: an accepted fingerprint is 32 bytes and survives
// the form PVE shows it in.
func FuzzParseFingerprint(f *testing.F) {
	f.Add(strings.Repeat("AB:", 31) + "AB")
	f.Add(strings.Repeat("0f", 32))
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parseFingerprint(s)
		if err != nil {
			return
		}
		if len(b) != 32 {
			t.Fatalf("%q: %d bytes", s, len(b))
		}
		again, err := parseFingerprint(formatFingerprint(b))
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%q: formatted fingerprint reads back as %x, %v", s, again, err)
		}
	})
}
