package agentlab_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
	"github.com/agentlab-sdk/agentlab/sshx"
	"github.com/agentlab-sdk/agentlab/store"
)

// realWorld is the whole real path: a SQLite file, go-proxmox over HTTPS to
// the simulator, and SSH/SFTP to its guests through its jump host.
type realWorld struct {
	sim     *pvesim.Server
	hv      *proxmox.Hypervisor
	store   *store.SQLite
	guest   *sshx.Transport
	cfg     agentlab.Config
	manager *agentlab.Manager
}

const e2eProfiles = `name: yolo-ephemeral
template_vmid: 9000
behavior:
  ttl_minutes_default: 180
job:
  command: cat "$AGENTLAB_TASK_FILE" > answer.txt; echo job says hi
  artifacts: [answer.txt]
---
name: net-off
template_vmid: 9000
network:
  mode: "off"
---
name: net-allow
template_vmid: 9000
network:
  mode: allowlist
  firewall_group: agent_allow
  allowlist: [192.0.2.10, 198.51.100.0/24]
`

func newRealWorld(t *testing.T, simCfg pvesim.Config) *realWorld {
	t.Helper()
	return newLoggedWorld(t, simCfg, nil)
}

// newLoggedWorld is newRealWorld with logger (nil: silent) given to the
// Manager, the Proxmox adapter and the SSH transport.
func newLoggedWorld(t *testing.T, simCfg pvesim.Config, logger *slog.Logger) *realWorld {
	t.Helper()
	ctx := ctxT(t)
	sim := pvesim.Start(t, simCfg)
	require.NoError(t, sim.AddTemplate(sim.Nodes()[0], 9000, "tmpl-agent", nil))
	hv, err := proxmox.New(ctx, proxmox.Config{URL: sim.URL(), TokenID: sim.TokenID(),
		TokenSecret: sim.TokenSecret(), Fingerprint: sim.Fingerprint(),
		GuestCIDR: netip.MustParsePrefix("10.77.0.0/16"), PollInterval: 5 * time.Millisecond,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, Logger: logger})
	require.NoError(t, err)
	t.Cleanup(func() { _ = hv.Close() })
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "agentlab.db"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	addr, jumpKey, jumpUser := sim.JumpHost()
	guest := sshx.New(sshx.Config{Signer: signer, Jump: &sshx.JumpHost{Addr: addr,
		User: jumpUser, HostKey: string(ssh.MarshalAuthorizedKey(jumpKey))}, Logger: logger})
	t.Cleanup(func() { _ = guest.Close() })

	profiles, err := agentlab.ParseProfiles("e2e.yaml", []byte(e2eProfiles))
	require.NoError(t, err)
	set, err := agentlab.NewProfileSet(profiles...)
	require.NoError(t, err)
	w := &realWorld{sim: sim, hv: hv, store: st, guest: guest}
	w.cfg = agentlab.Config{Store: st, Hypervisor: hv, Guest: guest, Profiles: set,
		SSHPublicKeys: []string{string(ssh.MarshalAuthorizedKey(signer.PublicKey()))},
		ArtifactDir:   t.TempDir(), JobPollInterval: 20 * time.Millisecond,
		ReapInterval: -1, IdleInterval: -1, ReconcileInterval: -1, Logger: logger}
	w.manager, err = agentlab.New(ctx, w.cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.manager.Close(context.Background()) })
	return w
}

func sh(t *testing.T, sb *agentlab.Sandbox, cmd string) string {
	t.Helper()
	res, err := sb.Exec(ctxT(t), agentlab.ExecRequest{Shell: cmd})
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode, "%s: %s", cmd, res.Stderr)
	return strings.TrimSpace(string(res.Stdout))
}

// TestE2E_LiveLogLifecycle replays the predecessor's live test log on the
// real path: lifecycle, lease renew, snapshot restore followed by SSH, and
// destroy, with nothing left behind.
func TestE2E_LiveLogLifecycle(t *testing.T) {
	w := newRealWorld(t, pvesim.Config{})
	ctx := ctxT(t)
	m := w.manager
	sb, err := m.Create(ctx, agentlab.CreateRequest{Profile: "yolo-ephemeral",
		Name: "live-lifecycle", VMID: 1065, TTL: 45 * time.Minute})
	require.NoError(t, err)
	rec := sb.Record()
	require.Equal(t, agentlab.StateRunning, rec.State)
	require.True(t, strings.HasPrefix(rec.IP, "10.77."), rec.IP)
	info, ok := w.sim.VM(1065)
	require.True(t, ok)
	require.Equal(t, string(ssh.MarshalAuthorizedKey(info.HostKey)), rec.HostKey+"\n",
		"host key pinned from the guest agent")

	require.Equal(t, "hello", sh(t, sb, "echo hello"))
	for _, step := range []struct {
		do   func(context.Context) error
		want agentlab.State
	}{
		{sb.Pause, agentlab.StateSuspended}, {sb.Resume, agentlab.StateReady},
		{sb.Stop, agentlab.StateStopped}, {sb.Start, agentlab.StateRunning},
	} {
		require.NoError(t, step.do(ctx))
		require.Equal(t, step.want, state(t, sb))
	}
	require.Equal(t, "after-restart", sh(t, sb, "echo after-restart"))
	require.NoError(t, sb.RenewLease(ctx, 90*time.Minute))

	// The predecessor lost SSH after a restore; here the guest answers at once.
	require.Equal(t, "ORIGINAL", sh(t, sb, "echo ORIGINAL > al_state.txt; cat al_state.txt"))
	require.NoError(t, sb.SaveSnapshot(ctx, "live-snap1", nil))
	require.Equal(t, "CHANGED", sh(t, sb, "echo CHANGED > al_state.txt; cat al_state.txt"))
	require.NoError(t, sb.RestoreSnapshot(ctx, "live-snap1", nil))
	require.Equal(t, agentlab.StateRunning, state(t, sb))
	require.Equal(t, "ORIGINAL", sh(t, sb, "cat al_state.txt"))
	snaps, err := sb.Snapshots(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"clean", "live-snap1"}, names(snaps))

	// Files both ways over SFTP.
	local := filepath.Join(t.TempDir(), "up.txt")
	require.NoError(t, os.WriteFile(local, []byte("payload"), 0o640))
	require.NoError(t, sb.Upload(ctx, local, "up.txt", nil))
	require.Equal(t, "payload", sh(t, sb, "cat up.txt"))
	back := filepath.Join(t.TempDir(), "back.txt")
	require.NoError(t, sb.Download(ctx, "up.txt", back, nil))
	got, err := os.ReadFile(back)
	require.NoError(t, err)
	require.Equal(t, "payload", string(got))

	require.NoError(t, sb.Stop(ctx))
	require.ErrorIs(t, sb.RenewLease(ctx, time.Hour), agentlab.ErrInvalidState)
	require.NoError(t, sb.Destroy(ctx))
	_, ok = w.sim.VM(1065)
	require.False(t, ok, "VM deleted")
	_, err = m.Create(ctx, agentlab.CreateRequest{Profile: "yolo-ephemeral", VMID: 9000})
	require.ErrorIs(t, err, agentlab.ErrVMIDConflict, "the template's VMID is taken")
}

// addSecurityGroup creates a cluster security group through the API, as an
// administrator would beforehand.
func addSecurityGroup(t *testing.T, sim *pvesim.Server, name string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, sim.URL()+"/cluster/firewall/groups",
		strings.NewReader(`{"group":"`+name+`"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "PVEAPIToken="+sim.TokenID()+"="+sim.TokenSecret())
	resp, err := sim.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestE2E_NetworkModes(t *testing.T) {
	w := newRealWorld(t, pvesim.Config{})
	ctx := ctxT(t)
	addSecurityGroup(t, w.sim, "agent_allow")
	off, err := w.manager.Create(ctx, agentlab.CreateRequest{Profile: "net-off", VMID: 1072})
	require.NoError(t, err)
	allow, err := w.manager.Create(ctx, agentlab.CreateRequest{Profile: "net-allow",
		VMID: 1073})
	require.NoError(t, err)

	vm, _ := w.sim.VM(off.VMID())
	require.NotContains(t, vm.Config["net0"], "fwgroup")
	require.Contains(t, vm.Config["net0"], "firewall=1")
	require.Equal(t, "1", vm.Firewall.Options["enable"])
	require.Equal(t, "DROP", vm.Firewall.Options["policy_out"])

	vm, _ = w.sim.VM(allow.VMID())
	require.Len(t, vm.Firewall.IPSets[proxmox.AllowIPSet], 2)
	var group bool
	for _, r := range vm.Firewall.Rules {
		group = group || (r.Type == "group" && r.Action == "agent_allow")
	}
	require.True(t, group, "the security group is a group rule: %+v", vm.Firewall.Rules)
	require.Equal(t, "ok", sh(t, allow, "echo ok"), "SSH still reaches the guest")
}

func TestE2E_JobOnSimulator(t *testing.T) {
	w := newRealWorld(t, pvesim.Config{})
	ctx := ctxT(t)
	j, err := w.manager.RunJob(ctx, agentlab.JobSpec{RepoURL: gitRepo(t), Profile: "yolo-ephemeral",
		Task: "what is 6*7?"})
	require.NoError(t, err)
	rec, err := j.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, agentlab.JobCompleted, rec.Status, rec.Message)
	var logs bytes.Buffer
	require.NoError(t, j.Logs(ctx, &logs, agentlab.LogOptions{}))
	require.Equal(t, "job says hi\n", logs.String())
	var answer agentlab.Artifact
	for _, a := range rec.Results {
		if a.Name == "answer.txt" {
			answer = a
		}
	}
	data, err := os.ReadFile(answer.Path)
	require.NoError(t, err)
	require.Equal(t, "what is 6*7?", string(data))
	require.Empty(t, w.sim.VMs()[1:], "only the template is left")
}

// TestE2E_ParallelCreatesUnderLockContention replays the predecessor's
// parallel creates on the real path while the simulator times out locks:
// every create succeeds or fails cleanly, no VMID is used twice, and no VM
// is left without a record.
func TestE2E_ParallelCreatesUnderLockContention(t *testing.T) {
	w := newRealWorld(t, pvesim.Config{Seed: 7,
		TaskDelays: map[string]time.Duration{"qmclone": 20 * time.Millisecond}})
	// The first three clones time out on the lock whatever the seed; then
	// about a third of them do.
	w.sim.InjectFault(pvesim.Fault{LockTimeout: true, FailTask: "qmclone", Count: 3})
	w.sim.InjectFault(pvesim.Fault{LockTimeout: true, FailTask: "qmclone", Probability: 0.3})
	w.sim.InjectFault(pvesim.Fault{Path: regexp.MustCompile(`/status/start$`), Status: 500,
		Message: "VM is locked (clone)", Probability: 0.2})
	ctx := ctxT(t)
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := w.manager.Create(ctx, agentlab.CreateRequest{Profile: "yolo-ephemeral",
				Name: fmt.Sprintf("par-%d", i)})
			errs <- err
		}()
	}
	ok := 0
	for range n {
		if err := <-errs; err == nil {
			ok++
		} else {
			require.True(t, classified(err), "unclassified: %v", err)
		}
	}
	require.Positive(t, ok)
	failed := 0
	for _, tk := range w.sim.Tasks() {
		if tk.Type == "qmclone" && tk.ExitStatus != "OK" {
			failed++
		}
	}
	t.Logf("%d of %d creates succeeded; %d clone tasks failed", ok, n, failed)
	require.GreaterOrEqual(t, failed, 3, "lock timeouts were injected into the clones")
	checkRealInvariants(t, w)
}

// TestE2E_ParallelJobs runs twenty jobs at once on the simulator: all
// complete and no VM is left.
func TestE2E_ParallelJobs(t *testing.T) {
	w := newRealWorld(t, pvesim.Config{})
	ctx := ctxT(t)
	repo := gitRepo(t)
	jobs := make([]*agentlab.Job, 20)
	for i := range jobs {
		j, err := w.manager.RunJob(ctx, agentlab.JobSpec{RepoURL: repo,
			Profile: "yolo-ephemeral", Task: fmt.Sprintf("task %d", i)})
		require.NoError(t, err)
		jobs[i] = j
	}
	for _, j := range jobs {
		rec, err := j.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, agentlab.JobCompleted, rec.Status, rec.Message)
	}
	require.Len(t, w.sim.VMs(), 1, "only the template is left")
}

// TestE2E_ArtifactBudget runs the artifact budget over SSH and SFTP: a
// single file larger than the budget is refused from its announced size, a
// tree that outgrows it is removed, and what fits is kept.
func TestE2E_ArtifactBudget(t *testing.T) {
	w := newRealWorld(t, pvesim.Config{})
	cfg := w.cfg
	cfg.MaxArtifactBytes = 1500
	m, err := agentlab.New(ctxT(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	ctx := ctxT(t)
	j, err := m.RunJob(ctx, agentlab.JobSpec{Profile: "yolo-ephemeral", Task: "t",
		Command: "head -c 5000 /dev/zero > answer.txt; mkdir tree; for i in 1 2 3 4 5 6; " +
			"do head -c 300 /dev/zero > tree/$i; done; echo small > small.txt",
		Artifacts: []string{"tree", "small.txt"}})
	require.NoError(t, err)
	rec, err := j.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, agentlab.JobCompleted, rec.Status, rec.Message)
	var names []string
	for _, a := range rec.Results {
		names = append(names, a.Name)
	}
	require.ElementsMatch(t, []string{"job.log", "small.txt"}, names)
	dir := filepath.Join(cfg.ArtifactDir, rec.ID)
	for _, gone := range []string{"answer.txt", "tree"} {
		_, err := os.Stat(filepath.Join(dir, gone))
		require.ErrorIs(t, err, os.ErrNotExist, "%s is not kept", gone)
	}
}

// TestE2E_ChangedHostKey: a guest whose SSH host key no longer matches the
// pinned one (as after a swap of the VM behind the address) is refused at
// once with ErrHostKeyMismatch, on start and on exec, and the pin stays.
func TestE2E_ChangedHostKey(t *testing.T) {
	w := newRealWorld(t, pvesim.Config{})
	ctx := ctxT(t)
	sb, err := w.manager.Create(ctx, agentlab.CreateRequest{Profile: "yolo-ephemeral"})
	require.NoError(t, err)
	require.NoError(t, sb.Stop(ctx))
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	other, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	pin := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other)))
	_, err = w.store.UpdateSandbox(ctx, sb.VMID(), func(r *agentlab.SandboxRecord) error {
		r.HostKey = pin
		return nil
	})
	require.NoError(t, err)

	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	require.ErrorIs(t, sb.Start(sctx), agentlab.ErrHostKeyMismatch)
	require.Less(t, time.Since(start), 10*time.Second, "a mismatch is not retried")
	_, err = sb.Exec(ctx, agentlab.ExecRequest{Shell: "true"})
	require.ErrorIs(t, err, agentlab.ErrHostKeyMismatch)
	rec, err := sb.Refresh(ctx)
	require.NoError(t, err)
	require.Equal(t, pin, rec.HostKey, "the guest's report does not replace the pin")
	require.NoError(t, sb.Destroy(ctx))
}
