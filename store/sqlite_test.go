package store_test

import (
	"path/filepath"
	"testing"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
	"github.com/agentlab-sdk/agentlab/store"
	"github.com/stretchr/testify/require"
)

func TestSQLiteConformance(t *testing.T) {
	agentlabtest.RunStoreTests(t, func(t *testing.T) agentlab.Store {
		s, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"), nil)
		require.NoError(t, err)
		return s
	})
}
