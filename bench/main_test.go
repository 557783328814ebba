package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test or benchmark leaves a goroutine behind:
// every simulator, server, Manager and connection is closed by cleanup.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
