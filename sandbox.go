package agentlab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sync"
	"time"
)

// Sandbox is a handle on one sandbox. It caches the record it last read;
// every operation re-reads the Store first, so several handles (and
// processes) on one sandbox stay consistent. It is safe for concurrent use.
type Sandbox struct {
	m    *Manager
	vmid int

	// born is the CreatedAt of the handle's sandbox. A record of the VMID
	// with another one is a later sandbox that took the VMID over: the
	// handle's own sandbox is destroyed, and the handle leaves the later
	// one alone.
	born time.Time

	mu  sync.Mutex // guards rec
	rec SandboxRecord
}

// handle returns a handle on the sandbox rec records.
func (m *Manager) handle(rec SandboxRecord) *Sandbox {
	return &Sandbox{m: m, vmid: rec.VMID, born: rec.CreatedAt, rec: rec}
}

// errReplaced reports that the handle's sandbox was destroyed and a later
// sandbox holds its VMID.
var errReplaced = fmt.Errorf("%w: the sandbox was destroyed and its vmid holds another one",
	ErrInvalidState)

// mine reports whether r records the handle's sandbox.
func (s *Sandbox) mine(r *SandboxRecord) bool { return r.CreatedAt.Equal(s.born) }

// gone is the handle's last record, destroyed.
func (s *Sandbox) gone() SandboxRecord {
	rec := s.Record()
	rec.State, rec.Op, rec.OpStarted, rec.IP = StateDestroyed, "", time.Time{}, ""
	return rec
}

// update applies fn to the handle's sandbox record; it fails with
// errReplaced when a later sandbox holds the VMID.
func (s *Sandbox) update(ctx context.Context, fn func(*SandboxRecord) error) (
	SandboxRecord, error) {
	return s.m.store.UpdateSandbox(ctx, s.vmid, func(r *SandboxRecord) error {
		if !s.mine(r) {
			return errReplaced
		}
		return fn(r)
	})
}

// commit is Manager.commit on the handle's sandbox record only.
func (s *Sandbox) commit(ctx context.Context, fn func(*SandboxRecord) ([]Event, error)) (
	SandboxRecord, error) {
	return s.m.commit(ctx, s.vmid, func(r *SandboxRecord) ([]Event, error) {
		if !s.mine(r) {
			return nil, errReplaced
		}
		return fn(r)
	})
}

// goneError is what op returns on a handle whose sandbox was replaced.
func goneError(op Op, vmid int) error {
	return &InvalidStateError{Op: op, VMID: vmid, State: StateDestroyed, Valid: ValidStates[op]}
}

// VMID returns the sandbox's VMID.
func (s *Sandbox) VMID() int { return s.vmid }

// Record returns the record as last read or written by this handle.
func (s *Sandbox) Record() SandboxRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.Clone()
}

// State returns the state as last read by this handle; call Refresh first
// for the current one.
func (s *Sandbox) State() State { return s.Record().State }

// Refresh re-reads the record from the Store. When a later sandbox has
// taken the VMID over, the handle's sandbox is destroyed: Refresh returns
// its last record in state DESTROYED.
func (s *Sandbox) Refresh(ctx context.Context) (SandboxRecord, error) {
	rec, err := s.m.store.GetSandbox(ctx, s.vmid)
	if err != nil {
		return SandboxRecord{}, fmt.Errorf("get sandbox %d: %w", s.vmid, err)
	}
	if !s.mine(&rec) {
		return s.gone(), nil
	}
	s.set(rec)
	return rec, nil
}

// set caches rec when it is a newer version of the handle's sandbox.
func (s *Sandbox) set(rec SandboxRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec.CreatedAt.Equal(s.born) && rec.Version >= s.rec.Version {
		s.rec = rec
	}
}

// CreateRequest describes a sandbox to create. Profile is required.
type CreateRequest struct {
	Profile string

	// Name is the sandbox and VM name (a DNS label); empty means
	// "sandbox-<vmid>". Names are unique among live sandboxes.
	Name string

	// VMID asks for this VMID; zero picks a free one in the configured
	// range. A taken VMID fails with ErrVMIDConflict and is never replaced.
	VMID int

	// TTL is the lease; zero takes the profile's default, and a negative
	// value means no expiry.
	TTL time.Duration

	// Keepalive keeps the sandbox after its job ends; nil takes the
	// profile's default.
	Keepalive *bool

	Labels map[string]string

	// NoWait returns as soon as the VM is started, in state BOOTING; the
	// Manager finishes the readiness steps in the background. A sandbox
	// still BOOTING when the Manager closes is destroyed, as an interrupted
	// provisioning is: by Close itself, or by the next reconcile after a
	// crash.
	NoWait bool

	// JobID binds the sandbox to a job.
	JobID string
}

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,62}[A-Za-z0-9])?$`)
)

func (r *CreateRequest) validate() error {
	if r.Name != "" && !nameRE.MatchString(r.Name) {
		return fmt.Errorf("%w: sandbox name %q (letters, digits and -, up to 63, "+
			"not starting or ending with -)", ErrInvalidArgument, r.Name)
	}
	if r.VMID != 0 && (r.VMID < 100 || r.VMID > 999999999) {
		return fmt.Errorf("%w: vmid %d is out of range 100-999999999", ErrInvalidArgument, r.VMID)
	}
	if len(r.Labels) > 64 {
		return fmt.Errorf("%w: more than 64 labels", ErrInvalidArgument)
	}
	for k, v := range r.Labels {
		if !labelKeyRE.MatchString(k) || len(v) > 256 {
			return fmt.Errorf("%w: label %q (key: letters, digits, . _ / -, up to 64; "+
				"value up to 256 bytes)", ErrInvalidArgument, k)
		}
	}
	if r.TTL > 0 && r.TTL < time.Minute {
		return fmt.Errorf("%w: ttl %v is shorter than a minute", ErrInvalidArgument, r.TTL)
	}
	return nil
}

// Create provisions a sandbox from a profile and returns once it is usable:
// the VM runs, its address is known and, when a Guest is configured, SSH
// answers. The sandbox then is in state RUNNING. With req.NoWait it returns
// in state BOOTING instead.
//
// When provisioning fails, the VM (if any was made) is destroyed, the
// record ends DESTROYED with the reason, and the error is returned. When
// that destroy fails too, the record ends FAILED with the provisioning
// marked abandoned: only Destroy is then valid, and Reconcile destroys the
// VM.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (*Sandbox, error) {
	if err := m.checkOpen(); err != nil {
		return nil, err
	}
	if err := req.validate(); err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	prof, err := m.Profiles().Get(req.Profile)
	if err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	skip := map[int]bool{}
	for {
		rec, err := m.reserve(ctx, &req, &prof, skip)
		if err != nil {
			return nil, fmt.Errorf("create sandbox: %w", err)
		}
		s := m.handle(rec)
		err = m.provision(ctx, s, &prof, req.NoWait)
		// An automatic VMID taken on the hypervisor by something the Store
		// does not know moves on to the next one; an explicit one fails.
		if req.VMID == 0 && errors.Is(err, ErrVMIDConflict) && len(skip) < maxVMIDSkips {
			skip[rec.VMID] = true
			continue
		}
		if err != nil {
			return s, fmt.Errorf("create sandbox %d: %w", rec.VMID, err)
		}
		return s, nil
	}
}

// maxVMIDSkips bounds how many taken VMIDs one Create steps over.
const maxVMIDSkips = 32

// newRecord fills a REQUESTED record from the request and profile.
func (m *Manager) newRecord(req *CreateRequest, p *Profile) SandboxRecord {
	now := m.now()
	rec := SandboxRecord{
		Name: req.Name, Profile: p.Name, State: StateRequested,
		NetworkMode: string(p.NetworkPolicy().Mode), Labels: maps.Clone(req.Labels),
		Keepalive: p.Behavior.KeepaliveDefault, JobID: req.JobID,
		User: p.SSHUser(), Port: p.SSH.Port, OnExpiry: p.Behavior.OnExpiry,
		IdleStop: time.Duration(p.Behavior.IdleStopMinutes) * time.Minute,
		Op:       "provision", OpStarted: now, Owner: m.cfg.Owner, LastActivity: now,
	}
	if req.Keepalive != nil {
		rec.Keepalive = *req.Keepalive
	}
	switch ttl := req.TTL; {
	case ttl > 0:
		rec.LeaseExpires = now.Add(ttl)
	case ttl == 0 && p.TTL() > 0:
		rec.LeaseExpires = now.Add(p.TTL())
	}
	return rec
}

// reserve writes the REQUESTED record, which reserves the VMID by a unique
// insert. An explicit VMID must also be free on the hypervisor.
func (m *Manager) reserve(ctx context.Context, req *CreateRequest, p *Profile,
	skip map[int]bool) (SandboxRecord, error) {
	rec := m.newRecord(req, p)
	if req.VMID != 0 {
		if err := m.checkVMIDFree(ctx, req.VMID); err != nil {
			return SandboxRecord{}, err
		}
		return rec, m.insert(ctx, &rec, req.VMID)
	}
	return m.reserveAuto(ctx, &rec, skip)
}

func (m *Manager) checkVMIDFree(ctx context.Context, vmid int) error {
	vm, err := m.hv.Status(ctx, vmid)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("check vmid %d: %w", vmid, err)
	}
	return fmt.Errorf("vmid %d: %w (vm %q exists on node %s)", vmid, ErrVMIDConflict,
		vm.Name, vm.Node)
}

func (m *Manager) insert(ctx context.Context, rec *SandboxRecord, vmid int) error {
	rec.VMID = vmid
	named := rec.Name != ""
	if !named {
		rec.Name = fmt.Sprintf("sandbox-%d", vmid)
	}
	err := m.store.CreateSandbox(ctx, rec)
	if err != nil && !named {
		rec.Name = ""
	}
	if errors.Is(err, ErrVMIDConflict) {
		return fmt.Errorf("vmid %d: %w", vmid, err)
	}
	return err
}

// reserveAuto tries the free VMIDs of the range in order until one insert
// wins; a lost race moves on to the next.
func (m *Manager) reserveAuto(ctx context.Context, rec *SandboxRecord, skip map[int]bool) (
	SandboxRecord, error) {
	live, err := m.store.ListSandboxes(ctx, SandboxFilter{States: liveStates})
	if err != nil {
		return SandboxRecord{}, err
	}
	used := make(map[int]bool, len(live))
	for _, r := range live {
		used[r.VMID] = true
	}
	for id := m.cfg.VMIDMin; id <= m.cfg.VMIDMax; id++ {
		if used[id] || skip[id] {
			continue
		}
		err := m.insert(ctx, rec, id)
		if errors.Is(err, ErrVMIDConflict) {
			continue
		}
		return *rec, err
	}
	return SandboxRecord{}, fmt.Errorf("%w: no free vmid in range [%d, %d]", ErrBusy,
		m.cfg.VMIDMin, m.cfg.VMIDMax)
}

// liveStates are all states but DESTROYED.
var liveStates = AllStates[:len(AllStates)-1]

// provision clones, starts and readies the VM behind a REQUESTED record.
func (m *Manager) provision(ctx context.Context, s *Sandbox, p *Profile, noWait bool) error {
	start := m.now()
	mayExist, err := m.provisionVM(ctx, s, p)
	if err != nil {
		m.abandon(ctx, s, mayExist, err)
		return err
	}
	if noWait {
		m.goBackground(func(ctx context.Context) {
			if err := m.finishReady(ctx, s, p, start); err != nil {
				m.abandon(ctx, s, true, err)
			}
		})
		return nil
	}
	if err := m.finishReady(ctx, s, p, start); err != nil {
		m.abandon(ctx, s, true, err)
		return err
	}
	return nil
}

// provisionVM clones and starts the VM. It reports whether a VM may exist.
func (m *Manager) provisionVM(ctx context.Context, s *Sandbox, p *Profile) (bool, error) {
	if _, err := m.transition(ctx, s, StateProvisioning, nil); err != nil {
		return false, err
	}
	vm, err := m.hv.Provision(ctx, m.provisionSpec(s.Record(), p))
	if err != nil {
		return !errors.Is(err, ErrVMIDConflict), fmt.Errorf("provision: %w", err)
	}
	for _, w := range vm.Warnings {
		m.emit(ctx, Event{Kind: EventNetworkWarning, VMID: s.vmid, Message: w,
			Data: map[string]any{"warning": w}})
	}
	node := vm.Node
	if _, err := m.transition(ctx, s, StateBooting, func(r *SandboxRecord) {
		r.Node = node
	}); err != nil {
		return true, err
	}
	if err := m.hv.Start(ctx, s.vmid); err != nil {
		return true, fmt.Errorf("start vm: %w", err)
	}
	return true, nil
}

func (m *Manager) provisionSpec(rec SandboxRecord, p *Profile) ProvisionSpec {
	return ProvisionSpec{
		VMID: rec.VMID, Name: rec.Name, Template: p.TemplateVMID, Full: p.FullClone,
		Node: p.Node, Cores: p.Resources.Cores, MemoryMB: p.Resources.MemoryMB,
		DiskGB: p.Storage.RootSizeGB, Network: p.NetworkPolicy(), User: rec.User,
		SSHKeys: m.cfg.SSHPublicKeys, Owner: m.cfg.Owner, Sandbox: rec.Name,
	}
}

// finishReady waits for the guest, takes the clean snapshot and moves the
// sandbox to RUNNING.
func (m *Manager) finishReady(ctx context.Context, s *Sandbox, p *Profile, start time.Time) error {
	sshReady, err := m.awaitGuest(ctx, s)
	if err != nil {
		return err
	}
	ready := Event{Kind: EventSandboxReady, VMID: s.vmid,
		Data: map[string]any{"duration_ms": m.now().Sub(start).Milliseconds()}}
	if _, err := m.transition(ctx, s, StateReady, nil, append(sshReady, ready)...); err != nil {
		return err
	}
	if p.WantsCleanSnapshot() {
		m.takeClean(ctx, s)
	}
	_, err = m.transition(ctx, s, StateRunning, func(r *SandboxRecord) {
		r.Op, r.OpStarted, r.LastActivity = "", time.Time{}, m.now()
	})
	return err
}

// takeClean takes the disk-only "clean" snapshot. A failure is recorded as
// an event; the sandbox stays usable without it.
func (m *Manager) takeClean(ctx context.Context, s *Sandbox) {
	err := m.hv.Snapshot(ctx, s.vmid, SnapshotSpec{Name: CleanSnapshot,
		Description: "agentlab: state at first ready"})
	if err != nil {
		m.emit(ctx, Event{Kind: EventSnapshotFailed, VMID: s.vmid, Message: err.Error(),
			Data: map[string]any{"name": CleanSnapshot, "error": err.Error()}})
		return
	}
	m.emit(ctx, Event{Kind: EventSnapshotCreated, VMID: s.vmid,
		Data: map[string]any{"name": CleanSnapshot, "memory": false}})
	rec, err := s.update(ctx, func(r *SandboxRecord) error {
		r.CleanSnapshot = true
		return nil
	})
	if err == nil {
		s.set(rec)
	}
}

// abandon tears down after a failed provisioning: it destroys the VM when
// one may exist and marks the record DESTROYED with the reason.
func (m *Manager) abandon(ctx context.Context, s *Sandbox, vmMayExist bool, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	m.emit(ctx, Event{Kind: EventSandboxProvisionFail, VMID: s.vmid, Message: cause.Error(),
		Data: map[string]any{"error": cause.Error()}})
	if vmMayExist {
		if err := m.destroyOwnedVM(ctx, s.vmid); err != nil {
			m.recordAbandoned(ctx, s, fmt.Errorf("%v; cleanup: %w", cause, err))
			return
		}
	}
	m.recordError(ctx, s, StateDestroyed, cause)
}

// opAbandoned marks a record whose provisioning failed and whose VM the
// cleanup could not destroy. The VM may lack its keys or its network
// policy: only Destroy is valid, and reconcile destroys it at once.
const opAbandoned = "abandoned"

// recordAbandoned moves the sandbox to FAILED with the error recorded and
// the operation marked abandoned.
func (m *Manager) recordAbandoned(ctx context.Context, s *Sandbox, cause error) {
	_, err := m.transition(ctx, s, StateFailed, func(r *SandboxRecord) {
		r.LastError, r.Op, r.OpStarted = cause.Error(), opAbandoned, m.now()
	})
	if err != nil {
		m.log.Debug("record failure", "vmid", s.vmid, "err", err)
	}
}

// destroyOwnedVM destroys vmid only if it carries this Manager's marker.
func (m *Manager) destroyOwnedVM(ctx context.Context, vmid int) error {
	vm, err := m.hv.Status(ctx, vmid)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if vm.Owner != m.cfg.Owner {
		return nil
	}
	return m.hv.Destroy(ctx, vmid)
}

// recordError moves the sandbox to state with the error recorded and the
// in-flight operation cleared.
func (m *Manager) recordError(ctx context.Context, s *Sandbox, to State, cause error) {
	_, err := m.transition(ctx, s, to, func(r *SandboxRecord) {
		r.LastError, r.Op, r.OpStarted = cause.Error(), "", time.Time{}
		if to == StateDestroyed {
			r.IP = ""
		}
	})
	if err != nil {
		m.log.Debug("record failure", "vmid", s.vmid, "err", err)
	}
}

// awaitGuest waits for the guest's address (and host key) from the
// hypervisor, then for SSH when a Guest is configured. It returns the
// sandbox.slo.ssh_ready event for the caller to store with the next state.
func (m *Manager) awaitGuest(ctx context.Context, s *Sandbox) ([]Event, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.ReadyTimeout)
	defer cancel()
	info, err := m.guestInfo(ctx, s.vmid)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w after %v: %w", ErrTimeout, m.cfg.ReadyTimeout, err)
		}
		return nil, fmt.Errorf("wait for guest address: %w", err)
	}
	rec, err := s.update(ctx, func(r *SandboxRecord) error {
		r.IP = info.IP
		if info.HostKey != "" && r.HostKey == "" {
			r.HostKey = info.HostKey
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.set(rec)
	return m.awaitSSH(ctx, s)
}

// guestInfo polls the hypervisor until the guest reports a usable address
// and, when keys are not trusted on first use, its host key.
func (m *Manager) guestInfo(ctx context.Context, vmid int) (GuestInfo, error) {
	delay := 50 * time.Millisecond
	conflicts := 0
	for {
		info, err := m.hv.GuestInfo(ctx, vmid)
		if err == nil {
			err = m.usable(ctx, vmid, info, &conflicts)
		}
		if err == nil {
			return info, nil
		}
		if !IsRetryable(err) {
			return GuestInfo{}, err
		}
		if serr := sleep(ctx, delay); serr != nil {
			return GuestInfo{}, fmt.Errorf("%w (last: %w)", serr, err)
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// usable checks what the guest reported: an address checkAddress accepts
// (a guest can claim any address), and a host key unless keys are trusted
// on first use. Failures are retryable: the agent may be busy, or the other
// sandbox may be going away.
func (m *Manager) usable(ctx context.Context, vmid int, info GuestInfo, conflicts *int) error {
	if err := m.checkAddress(ctx, vmid, info.IP, conflicts); err != nil {
		return err
	}
	if info.HostKey == "" && !m.cfg.TrustOnFirstUse && m.guest != nil {
		return fmt.Errorf("%w: the hypervisor did not report the guest's ssh host key "+
			"and trust on first use is off", ErrNotReady)
	}
	return nil
}

// checkAddress accepts ip, reported by vmid's guest, when it is a unicast
// address (never the host itself, a broadcast or a name) that no other live
// sandbox holds. The first conflict seen (*conflicts is zero) is emitted as
// an event. Failures match ErrNotReady.
func (m *Manager) checkAddress(ctx context.Context, vmid int, ip string, conflicts *int) error {
	if ip == "" {
		return fmt.Errorf("%w: guest reports no address yet", ErrNotReady)
	}
	if a, err := netip.ParseAddr(ip); err != nil || !a.IsGlobalUnicast() {
		return fmt.Errorf("%w: guest reports %q, not a usable address", ErrNotReady, ip)
	}
	holders, err := m.store.ListSandboxes(ctx, SandboxFilter{IP: ip, States: liveStates})
	if err != nil {
		return err
	}
	for _, h := range holders {
		if h.VMID == vmid {
			continue
		}
		if *conflicts == 0 {
			m.emit(ctx, Event{Kind: EventIPConflict, VMID: vmid,
				Message: fmt.Sprintf("guest reports %s, held by sandbox %d", ip, h.VMID),
				Data:    map[string]any{"ip": ip, "conflicting_vmid": h.VMID}})
		}
		*conflicts++
		return fmt.Errorf("%w: guest reports address %s, held by sandbox %d", ErrNotReady,
			ip, h.VMID)
	}
	return nil
}

func (m *Manager) awaitSSH(ctx context.Context, s *Sandbox) ([]Event, error) {
	if m.guest == nil {
		return nil, nil
	}
	start := m.now()
	err := m.guest.WaitReady(ctx, m.endpoint(s.Record()))
	data := map[string]any{"duration_ms": m.now().Sub(start).Milliseconds(),
		"ip": s.Record().IP}
	if err != nil {
		data["error"] = err.Error()
		m.emit(ctx, Event{Kind: EventSandboxSSHFailed, VMID: s.vmid, Message: err.Error(),
			Data: data})
		return nil, fmt.Errorf("wait for ssh: %w", err)
	}
	return []Event{{Kind: EventSandboxSSHReady, VMID: s.vmid, Data: data}}, nil
}

// endpoint builds the Guest endpoint of a record; a host key learned on
// first use is pinned in the Store.
func (m *Manager) endpoint(rec SandboxRecord) Endpoint {
	return Endpoint{
		VMID: rec.VMID, Host: rec.IP, Port: rec.Port, User: rec.User, HostKey: rec.HostKey,
		TrustOnFirstUse: m.cfg.TrustOnFirstUse,
		LearnHostKey: func(key string) error {
			_, err := m.store.UpdateSandbox(context.Background(), rec.VMID,
				func(r *SandboxRecord) error {
					if !r.CreatedAt.Equal(rec.CreatedAt) {
						return errReplaced
					}
					if r.HostKey != "" && r.HostKey != key {
						return ErrHostKeyMismatch
					}
					r.HostKey = key
					return nil
				})
			return err
		},
	}
}

// transition moves the sandbox to state "to" by compare-and-set, applying
// mutate in the same update. The sandbox.state event (when the state
// changed) and the extra events are stored in the same transaction.
func (m *Manager) transition(ctx context.Context, s *Sandbox, to State,
	mutate func(*SandboxRecord), extra ...Event) (SandboxRecord, error) {
	var from State
	rec, err := s.commit(ctx, func(r *SandboxRecord) ([]Event, error) {
		from = r.State
		if !CanTransition(r.State, to) {
			return nil, fmt.Errorf("%w: sandbox %d cannot move from %s to %s",
				ErrInvalidState, r.VMID, r.State, to)
		}
		r.State = to
		if mutate != nil {
			mutate(r)
		}
		var evs []Event
		if from != to {
			evs = append(evs, Event{Kind: EventSandboxState, VMID: r.VMID, JobID: r.JobID,
				Data: map[string]any{"from_state": string(from), "to_state": string(to)}})
		}
		return append(evs, extra...), nil
	})
	if err != nil {
		return SandboxRecord{}, err
	}
	s.set(rec)
	if from != to {
		m.log.Debug("sandbox state", "vmid", s.vmid, "from", from, "to", to)
	}
	return rec, nil
}

// goBackground runs fn in a goroutine the Manager owns; fn's context ends
// when the Manager closes.
func (m *Manager) goBackground(fn func(ctx context.Context)) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn(m.ctx)
	}()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Get returns a handle on the sandbox holding vmid, or an error matching
// ErrNotFound.
func (m *Manager) Get(ctx context.Context, vmid int) (*Sandbox, error) {
	rec, err := m.store.GetSandbox(ctx, vmid)
	if err != nil {
		return nil, fmt.Errorf("get sandbox %d: %w", vmid, err)
	}
	return m.handle(rec), nil
}

// GetByName returns a handle on the named sandbox.
func (m *Manager) GetByName(ctx context.Context, name string) (*Sandbox, error) {
	rec, err := m.store.GetSandboxByName(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("get sandbox %q: %w", name, err)
	}
	return m.handle(rec), nil
}

// List returns the records of the sandboxes f selects, ordered by VMID.
func (m *Manager) List(ctx context.Context, f SandboxFilter) ([]SandboxRecord, error) {
	recs, err := m.store.ListSandboxes(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	return recs, nil
}

// Wait blocks until the sandbox is in one of states and returns its record.
// It returns an error when ctx ends, and ErrInvalidState when the sandbox is
// destroyed while DESTROYED is not among states.
func (s *Sandbox) Wait(ctx context.Context, states ...State) (SandboxRecord, error) {
	for {
		rec, err := s.Refresh(ctx)
		if err != nil {
			return rec, err
		}
		if slices.Contains(states, rec.State) {
			return rec, nil
		}
		if rec.State == StateDestroyed {
			return rec, fmt.Errorf("wait for sandbox %d: %w: destroyed", s.vmid, ErrInvalidState)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return rec, fmt.Errorf("wait for sandbox %d: %w", s.vmid, err)
		}
	}
}
