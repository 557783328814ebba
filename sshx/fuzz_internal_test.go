package sshx

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseState feeds parseState what a guest may print for a background
// process: only "running", "lost" and "exit N" are states, N is kept as
// printed, and anything else is an error.
func FuzzParseState(f *testing.F) {
	for _, s := range []string{"running\n", "lost", "exit 0\n", "exit 137", "exit -1",
		"exit ", "exit 99999999999999999999", "running\nexit 0", " exit 3 ", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out string) {
		st, err := parseState("p1", out)
		if st.ID != "p1" {
			t.Fatalf("id %q, want p1", st.ID)
		}
		line := strings.TrimSpace(out)
		switch {
		case line == "running":
			if err != nil || !st.Running {
				t.Fatalf("%q: running=%v err=%v", out, st.Running, err)
			}
		case err != nil:
			if st.Running || st.ExitCode != 0 {
				t.Fatalf("%q: failed with state %+v", out, st)
			}
		default:
			code, perr := strconv.Atoi(strings.TrimPrefix(line, "exit "))
			if !strings.HasPrefix(line, "exit ") || perr != nil || code != st.ExitCode ||
				st.Running {
				t.Fatalf("%q accepted as %+v", out, st)
			}
		}
	})
}

// FuzzSplitRemote: an accepted path splits into a directory and a plain
// last element that put together give the path back.
func FuzzSplitRemote(f *testing.F) {
	for _, s := range []string{"a", "/a", "a/b", "/", "a/", "a/..", "a//b", "./x", "x\x00y",
		"//", "..", "dir/.", "/tmp/f.txt"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		dir, base, ok := splitRemote(p)
		if !ok {
			return
		}
		if base == "" || base == "." || base == ".." || strings.ContainsAny(base, "/\x00") {
			t.Fatalf("%q: unusable last element %q", p, base)
		}
		want := "."
		if head, found := strings.CutSuffix(p, "/"+base); found {
			want = head
			if head == "" {
				want = "/"
			}
		} else if p != base {
			t.Fatalf("%q does not end in its last element %q", p, base)
		}
		if dir != want {
			t.Fatalf("%q split into %q and %q", p, dir, base)
		}
	})
}

// FuzzParseKey: a pinned key that parses survives FormatKey and a second
// parse unchanged.
func FuzzParseKey(f *testing.F) {
	f.Add("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGn6oTO1LPhsY8sR1eWWwNvXQPzw1Qz3bAKmN0l0Q0WZ")
	f.Add("ssh-ed25519 AAAA")
	f.Add("")
	f.Add("# comment\nssh-rsa AAAAB3NzaC1yc2E= x")
	f.Fuzz(func(t *testing.T, s string) {
		pk, err := parseKey(s)
		if err != nil {
			return
		}
		again, err := parseKey(FormatKey(pk))
		if err != nil {
			t.Fatalf("%q: formatted key does not parse: %v", s, err)
		}
		if string(again.Marshal()) != string(pk.Marshal()) {
			t.Fatalf("%q: key changed through FormatKey", s)
		}
	})
}
