package main

import (
	"strconv"
	"testing"
	"time"

	px "github.com/luthermonson/go-proxmox"
	"github.com/stretchr/testify/require"
)

// TestReconcile stops a VM behind the SDK's back and lets reconcile report
// and then fix the record.
func TestReconcile(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	vmid := e.newSandbox("--profile", "minimal")
	client := px.NewClient(e.srv.URL(), px.WithHTTPClient(e.srv.Client()),
		px.WithAPIToken(e.srv.TokenID(), e.srv.TokenSecret()))
	var upid string
	path := "/nodes/pve1/qemu/" + strconv.Itoa(vmid) + "/status/stop"
	require.NoError(t, client.Post(testCtx(t), path, nil, &upid))
	require.Eventually(t, func() bool {
		vm, _ := e.srv.VM(vmid)
		return vm.Status == "stopped"
	}, 10*time.Second, 10*time.Millisecond)

	var rep struct{ Findings []findingJSON }
	e.okJSON(&rep, "reconcile")
	require.Len(t, rep.Findings, 1)
	require.Equal(t, "power_state_mismatch", rep.Findings[0].Kind)
	require.Empty(t, rep.Findings[0].Action)
	require.Equal(t, "RUNNING", field(t, e.ok("sandbox", "show", strconv.Itoa(vmid)), "State"))

	out := e.ok("reconcile", "--apply")
	require.Contains(t, out, "power_state_mismatch")
	require.Contains(t, out, "marked STOPPED")
	require.Equal(t, "STOPPED", field(t, e.ok("sandbox", "show", strconv.Itoa(vmid)), "State"))
	require.Contains(t, e.ok("reconcile"), "no findings")
}
