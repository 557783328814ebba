package agentlabtest_test

import (
	"testing"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
	"go.uber.org/goleak"
)

func TestNewStoreConformance(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	agentlabtest.RunStoreTests(t, func(*testing.T) agentlab.Store {
		return agentlabtest.NewStore()
	})
}
