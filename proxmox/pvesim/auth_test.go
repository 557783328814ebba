package pvesim_test

import (
	"testing"

	proxmox "github.com/luthermonson/go-proxmox"
	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

func TestAuth(t *testing.T) {
	srv := pvesim.Start(t, pvesim.Config{
		Tokens: map[string]string{"root@pam!agentlab": "s3cret"},
		Users:  map[string]string{"root@pam": "hunter2"},
	})
	require.NoError(t, srv.AddTemplate("pve1", tmplID, "tmpl", nil))
	ctx := ctxT(t)

	bad := newClient(t, srv, proxmox.WithAPIToken("root@pam!agentlab", "wrong"))
	_, err := bad.Version(ctx)
	require.ErrorIs(t, err, proxmox.ErrNotAuthorized)
	require.Contains(t, err.Error(), "401 Authentication failed!")

	good := newClient(t, srv, proxmox.WithAPIToken("root@pam!agentlab", "s3cret"))
	_, err = good.Version(ctx)
	require.NoError(t, err)

	wrongPw := newClient(t, srv, password("nope"))
	_, err = wrongPw.Version(ctx)
	require.ErrorIs(t, err, proxmox.ErrNotAuthorized)

	sess := newClient(t, srv, password("hunter2"))
	_, err = sess.Version(ctx)
	require.NoError(t, err)
	tmpl, err := sess.NodeRef("pve1").VirtualMachine(ctx, tmplID)
	require.NoError(t, err)
	_, task, err := tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: 120})
	require.NoError(t, err, "POST with ticket and CSRF token")
	wait(t, ctx, task)
	require.Equal(t, "root@pam", srv.Tasks()[0].User)

	srv.ExpireTickets()
	_, err = sess.Version(ctx)
	require.ErrorIs(t, err, proxmox.ErrNotAuthorized,
		"go-proxmox trusts its session for an hour and does not log in again on a 401")
	fresh := newClient(t, srv, password("hunter2"))
	_, err = fresh.Version(ctx)
	require.NoError(t, err)
}

// password is a go-proxmox option logging in as root@pam with pw.
func password(pw string) proxmox.Option {
	return proxmox.WithCredentials(&proxmox.Credentials{Username: "root@pam", Password: pw})
}
