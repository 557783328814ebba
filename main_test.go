package agentlab_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// Manager is closed by its test's cleanup, which must join its loops.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
