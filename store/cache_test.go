package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
)

// openPair opens two handles on one file, as two processes would.
func openPair(t *testing.T) (a, b *SQLite) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pair.db")
	open := func() *SQLite {
		s, err := Open(t.Context(), path, nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	return open(), open()
}

// setLabel returns an update function that sets label k to v and records
// the value it saw before.
func setLabel(k, v string, saw *string) func(*agentlab.SandboxRecord) error {
	return func(r *agentlab.SandboxRecord) error {
		*saw = r.Labels[k]
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		r.Labels[k] = v
		return nil
	}
}

// TestRowCacheSeesOtherWriters checks that a handle which wrote a row last
// and kept it notices another handle's later write: its next update runs
// on the other handle's record, so nothing is lost.
func TestRowCacheSeesOtherWriters(t *testing.T) {
	ctx := context.Background()
	a, b := openPair(t)
	require.NoError(t, a.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: 100,
		State: agentlab.StateRunning}))
	var saw string
	_, err := a.UpdateSandbox(ctx, 100, setLabel("n", "a1", &saw))
	require.NoError(t, err)
	_, ok := a.rows.get(100)
	require.True(t, ok, "a keeps the row it wrote")

	_, err = b.UpdateSandbox(ctx, 100, setLabel("n", "b1", &saw))
	require.NoError(t, err)
	require.Equal(t, "a1", saw, "b reads a's write")

	out, err := a.UpdateSandbox(ctx, 100, setLabel("n", "a2", &saw))
	require.NoError(t, err)
	require.Equal(t, "b1", saw, "a's kept row is stale; the update reads b's")
	require.Equal(t, int64(4), out.Version)
	got, err := b.GetSandbox(ctx, 100)
	require.NoError(t, err)
	require.Equal(t, "a2", got.Labels["n"])
	require.Equal(t, int64(4), got.Version)
}

// TestRowCacheAfterOtherDestroys checks that a kept live row destroyed and
// replaced by another handle is not written: the update acts on the new
// live row, as GetSandbox picks it.
func TestRowCacheAfterOtherDestroys(t *testing.T) {
	ctx := context.Background()
	a, b := openPair(t)
	require.NoError(t, a.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: 200,
		Name: "old", State: agentlab.StateRunning}))
	_, err := b.UpdateSandbox(ctx, 200, func(r *agentlab.SandboxRecord) error {
		r.State = agentlab.StateDestroyed
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, b.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: 200,
		Name: "new", State: agentlab.StateRunning}))

	var name string
	out, err := a.UpdateSandbox(ctx, 200, func(r *agentlab.SandboxRecord) error {
		name = r.Name
		r.IP = "10.0.0.7"
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, "new", name)
	require.Equal(t, "10.0.0.7", out.IP)

	hist, err := b.ListSandboxes(ctx, agentlab.SandboxFilter{
		States: []agentlab.State{agentlab.StateDestroyed}})
	require.NoError(t, err)
	require.Len(t, hist, 1)
	require.Empty(t, hist[0].IP, "the destroyed row is left alone")
}

// TestRowCacheForgetsDestroyedAndFailed checks that a destroyed row and a
// row whose update failed are not kept.
func TestRowCacheForgetsDestroyedAndFailed(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, nil)
	for _, vmid := range []int{300, 301} {
		require.NoError(t, s.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: vmid,
			Name: "n" + string(rune('0'+vmid-300)), State: agentlab.StateRunning}))
	}
	_, err := s.UpdateSandbox(ctx, 300, func(r *agentlab.SandboxRecord) error {
		r.State = agentlab.StateDestroyed
		return nil
	})
	require.NoError(t, err)
	_, ok := s.rows.get(300)
	require.False(t, ok, "a destroyed row is not kept")

	_, err = s.UpdateSandbox(ctx, 301, func(r *agentlab.SandboxRecord) error {
		r.VMID = 999 // refused: an update cannot move a sandbox
		return nil
	})
	require.ErrorIs(t, err, agentlab.ErrInvalidArgument)
	_, ok = s.rows.get(301)
	require.False(t, ok, "a failed update forgets the row")
	got, err := s.GetSandbox(ctx, 301)
	require.NoError(t, err)
	require.Equal(t, "n1", got.Name)
}
