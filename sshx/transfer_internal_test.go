package sshx

import "testing"

func TestSafeName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"file.txt", true}, {"..dots", true}, {`back\slash`, true}, {".hidden", true},
		{"", false}, {".", false}, {"..", false}, {"../x", false}, {"/abs", false},
		{"a/b", false}, {"nul\x00", false},
	}
	for _, tt := range tests {
		if got := safeName(tt.name); got != tt.ok {
			t.Errorf("safeName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}
