// Command eventwatcher reads agentlab's durable event log: it replays the
// events after a given ID and can follow new ones, the way any process
// sharing a Store catches up (events are pushed only to subscribers of the
// Manager that made them; everything is in the Store).
//
//	eventwatcher -db ~/.config/agentlab/agentlab.db -after 120 -follow
//
// Without -db it demonstrates the catch-up pattern on its own: a sandbox
// lifecycle runs on the pvesim simulator while a subscription with a tiny
// buffer drops events, and the watcher replays what it missed from the last
// ID it received.
package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
	"github.com/agentlab-sdk/agentlab/sshx"
	"github.com/agentlab-sdk/agentlab/store"
)

func main() {
	db := flag.String("db", "", "SQLite store to read (default: run the self-contained demo)")
	after := flag.Int64("after", 0, "replay events with an ID greater than this")
	follow := flag.Bool("follow", false, "keep printing new events until interrupted")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if *db == "" {
		err = demo(ctx, *after)
	} else {
		err = watchFile(ctx, *db, *after, *follow)
	}
	if err != nil {
		log.Fatal(err)
	}
}

func watchFile(ctx context.Context, path string, after int64, follow bool) error {
	st, err := store.Open(ctx, path, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	_, err = replay(ctx, st, after, follow, os.Stdout)
	return err
}

// replay prints the events after ID after, in ID order; with follow it
// polls for new ones until ctx ends. It returns the last ID printed.
func replay(ctx context.Context, st agentlab.Store, after int64, follow bool,
	w io.Writer) (int64, error) {
	for {
		evs, err := st.ListEvents(ctx, agentlab.EventFilter{AfterID: after, Limit: 500})
		if err != nil {
			return after, err
		}
		for _, ev := range evs {
			fmt.Fprintf(w, "%4d %s %-26s vmid=%d %v\n", ev.ID,
				ev.Time.UTC().Format(time.RFC3339), ev.Kind, ev.VMID, ev.Data)
			after = ev.ID
		}
		if len(evs) == 500 {
			continue
		}
		if !follow {
			return after, nil
		}
		select {
		case <-ctx.Done():
			return after, nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// demo runs a lifecycle with a subscriber that cannot keep up, then
// catches up from the Store.
func demo(ctx context.Context, after int64) error {
	dir, err := os.MkdirTemp("", "eventwatcher-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sim, err := pvesim.NewServer(pvesim.Config{Dir: filepath.Join(dir, "sim")})
	if err != nil {
		return err
	}
	defer sim.Close()
	if err := sim.AddTemplate("pve1", 9000, "debian-13", nil); err != nil {
		return err
	}
	st, err := store.Open(ctx, filepath.Join(dir, "agentlab.db"), nil)
	if err != nil {
		return err
	}
	defer st.Close()
	m, guest, err := newManager(ctx, sim, st)
	if err != nil {
		return err
	}
	defer guest.Close()
	defer m.Close(context.Background())

	// A subscriber with room for one event that reads nothing meanwhile.
	sub, err := m.Subscribe(agentlab.SubscribeOptions{Buffer: 1})
	if err != nil {
		return err
	}
	defer sub.Close()
	if err := lifecycle(ctx, m); err != nil {
		return err
	}
	first := <-sub.C()
	fmt.Printf("the subscriber received event %d and missed %d\n", first.ID, sub.Dropped())
	fmt.Printf("catching up from the store after event %d:\n", first.ID)
	last, err := replay(ctx, st, first.ID, false, os.Stdout)
	if err != nil {
		return err
	}
	fmt.Printf("caught up to event %d; replaying after %d again:\n", last, after)
	_, err = replay(ctx, st, after, false, os.Stdout)
	return err
}

func lifecycle(ctx context.Context, m *agentlab.Manager) error {
	sb, err := m.Create(ctx, agentlab.CreateRequest{Profile: "dev"})
	if err != nil {
		return err
	}
	for _, op := range []func(context.Context) error{sb.Pause, sb.Resume, sb.Stop, sb.Start,
		sb.Destroy} {
		if err := op(ctx); err != nil {
			return err
		}
	}
	return nil
}

func newManager(ctx context.Context, sim *pvesim.Server, st agentlab.Store) (
	*agentlab.Manager, *sshx.Transport, error) {
	hv, err := proxmox.New(ctx, proxmox.Config{URL: sim.URL(), TokenID: sim.TokenID(),
		TokenSecret: sim.TokenSecret(), Fingerprint: sim.Fingerprint(),
		PollInterval: 20 * time.Millisecond})
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
	profiles, err := agentlab.NewProfileSet(agentlab.Profile{Name: "dev", TemplateVMID: 9000})
	if err != nil {
		return nil, nil, err
	}
	m, err := agentlab.New(ctx, agentlab.Config{Store: st, Hypervisor: hv, Guest: guest,
		Profiles:      profiles,
		SSHPublicKeys: []string{string(ssh.MarshalAuthorizedKey(signer.PublicKey()))}})
	if err != nil {
		guest.Close()
		return nil, nil, err
	}
	return m, guest, nil
}
