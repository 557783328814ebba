package store_test

import (
	"testing"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
	"github.com/agentlab-sdk/agentlab/store"
)

func TestMemoryConformance(t *testing.T) {
	agentlabtest.RunStoreTests(t, func(t *testing.T) agentlab.Store {
		return store.NewMemory(nil)
	})
}
