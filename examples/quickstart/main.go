// Command quickstart is the smallest complete agentlab program: it starts a
// simulated Proxmox VE cluster (pvesim), builds a Manager on it, and walks
// one sandbox through create, exec, snapshot and restore, and destroy,
// printing every event as it arrives.
//
// Run it with: go run ./examples/quickstart
//
// To use a real Proxmox host instead, replace the pvesim server with your
// API URL, token and certificate fingerprint in proxmox.Config, and drop the
// Dial field of sshx.Config (or set Jump to reach the guest network).
package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
	"github.com/agentlab-sdk/agentlab/sshx"
	"github.com/agentlab-sdk/agentlab/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	// A simulated cluster: the real PVE API on loopback HTTPS, one template.
	sim, err := pvesim.NewServer(pvesim.Config{})
	if err != nil {
		return err
	}
	defer sim.Close()
	if err := sim.AddTemplate("pve1", 9000, "debian-13", nil); err != nil {
		return err
	}

	m, closeAll, err := newManager(ctx, sim)
	if err != nil {
		return err
	}
	defer closeAll()

	// Print events as they arrive, from a goroutine of our own.
	sub, err := m.Subscribe(agentlab.SubscribeOptions{})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ev := range sub.C() {
			fmt.Printf("  event %d %s %v\n", ev.ID, ev.Kind, ev.Data)
		}
	}()
	err = story(ctx, m)
	sub.Close()
	wg.Wait()
	return err
}

// newManager wires the three backends: Proxmox (here the simulator), SSH
// to the guests, and a Store.
func newManager(ctx context.Context, sim *pvesim.Server) (*agentlab.Manager, func(), error) {
	hv, err := proxmox.New(ctx, proxmox.Config{
		URL: sim.URL(), TokenID: sim.TokenID(), TokenSecret: sim.TokenSecret(),
		Fingerprint:  sim.Fingerprint(), // trust the server by its certificate pin
		PollInterval: 20 * time.Millisecond,
	})
	if err != nil {
		return nil, nil, err
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return nil, nil, err
	}
	guest := sshx.New(sshx.Config{Signer: signer, Dial: sim.Dialer()})
	st := store.NewMemory(nil) // store.Open(ctx, "agentlab.db", nil) to keep state
	profiles, err := agentlab.NewProfileSet(agentlab.Profile{Name: "dev", TemplateVMID: 9000})
	if err != nil {
		return nil, nil, err
	}
	m, err := agentlab.New(ctx, agentlab.Config{
		Store: st, Hypervisor: hv, Guest: guest, Profiles: profiles,
		SSHPublicKeys: []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))},
	})
	if err != nil {
		guest.Close()
		return nil, nil, err
	}
	return m, func() {
		_ = m.Close(context.Background())
		_ = guest.Close()
		_ = st.Close()
	}, nil
}

// story is what an orchestrator does with a sandbox.
func story(ctx context.Context, m *agentlab.Manager) error {
	sb, err := m.Create(ctx, agentlab.CreateRequest{Profile: "dev", TTL: 30 * time.Minute})
	if err != nil {
		return err
	}
	fmt.Printf("sandbox %d is %s at %s\n", sb.VMID(), sb.State(), sb.Record().IP)

	if _, err := sh(ctx, sb, "echo ORIGINAL > marker.txt"); err != nil {
		return err
	}
	if err := sb.SaveSnapshot(ctx, "before", nil); err != nil {
		return err
	}
	if _, err := sh(ctx, sb, "echo CHANGED > marker.txt"); err != nil {
		return err
	}
	if err := sb.RestoreSnapshot(ctx, "before", nil); err != nil {
		return err
	}
	out, err := sh(ctx, sb, "cat marker.txt")
	if err != nil {
		return err
	}
	fmt.Printf("after restore the marker reads %s\n", out)

	if err := sb.Destroy(ctx); err != nil {
		return err
	}
	fmt.Printf("sandbox %d is %s\n", sb.VMID(), sb.State())
	return nil
}

// sh runs a shell command in the sandbox and returns its output.
func sh(ctx context.Context, sb *agentlab.Sandbox, cmd string) (string, error) {
	res, err := sb.Exec(ctx, agentlab.ExecRequest{Shell: cmd})
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("%q exited %d: %s", cmd, res.ExitCode, res.Stderr)
	}
	return strings.TrimSpace(string(res.Stdout)), nil
}
