package agentlab

import (
	"context"
	"fmt"
)

// guestTarget re-reads the record, checks that guest operations are valid
// in its state, and returns the endpoint.
func (s *Sandbox) guestTarget(ctx context.Context, verb string) (Endpoint, error) {
	if s.m.guest == nil {
		return Endpoint{}, fmt.Errorf("%s sandbox %d: %w: no Guest configured", verb, s.vmid,
			ErrUnsupported)
	}
	rec, err := s.Refresh(ctx)
	if err != nil {
		return Endpoint{}, err
	}
	if err := checkOp(OpExec, s.vmid, rec.State); err != nil {
		return Endpoint{}, fmt.Errorf("%s sandbox %d: %w", verb, s.vmid, err)
	}
	if rec.IP == "" {
		return Endpoint{}, fmt.Errorf("%s sandbox %d: %w: no guest address yet", verb, s.vmid,
			ErrNotReady)
	}
	s.m.noteActivity(ctx, s)
	return s.m.endpoint(rec), nil
}

// guestBegin marks a guest operation in flight on s, so that idle stop
// leaves the sandbox alone; the returned func ends it and records the
// activity again.
func (m *Manager) guestBegin(s *Sandbox) (end func()) {
	m.mu.Lock()
	m.inGuest[s.vmid]++
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		if m.inGuest[s.vmid]--; m.inGuest[s.vmid] <= 0 {
			delete(m.inGuest, s.vmid)
		}
		m.mu.Unlock()
		m.noteActivity(context.Background(), s)
	}
}

// guestBusy reports whether this Manager has a guest operation in flight
// on vmid.
func (m *Manager) guestBusy(vmid int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inGuest[vmid] > 0
}

// Exec runs a command in the sandbox's guest and waits for it. A non-zero
// exit is reported in the result, not as an error; an error means the
// command could not be run or its outcome is unknown. Cancelling ctx
// signals the remote process. Exec counts as activity for idle stop, and
// a sandbox is not idle while an Exec or transfer through this Manager runs.
func (s *Sandbox) Exec(ctx context.Context, req ExecRequest) (ExecResult, error) {
	ep, err := s.guestTarget(ctx, "exec in")
	if err != nil {
		return ExecResult{}, err
	}
	defer s.m.guestBegin(s)()
	res, err := s.m.guest.Exec(ctx, ep, req)
	if err != nil {
		return res, fmt.Errorf("exec in sandbox %d: %w", s.vmid, err)
	}
	return res, nil
}

// Upload copies a local file or directory tree into the guest.
func (s *Sandbox) Upload(ctx context.Context, localPath, remotePath string,
	opts *TransferOptions) error {
	ep, err := s.guestTarget(ctx, "upload to")
	if err != nil {
		return err
	}
	defer s.m.guestBegin(s)()
	if err := s.m.guest.Upload(ctx, ep, localPath, remotePath, opts); err != nil {
		return fmt.Errorf("upload to sandbox %d: %w", s.vmid, err)
	}
	return nil
}

// Download copies a file or directory tree from the guest. Names that would
// land outside localPath are refused.
func (s *Sandbox) Download(ctx context.Context, remotePath, localPath string,
	opts *TransferOptions) error {
	ep, err := s.guestTarget(ctx, "download from")
	if err != nil {
		return err
	}
	defer s.m.guestBegin(s)()
	if err := s.m.guest.Download(ctx, ep, remotePath, localPath, opts); err != nil {
		return fmt.Errorf("download from sandbox %d: %w", s.vmid, err)
	}
	return nil
}

// Endpoint returns how to reach the sandbox's guest, for callers that open
// their own SSH sessions (the CLI's interactive shell). Such sessions count
// as activity only when the caller reports them with [Sandbox.Touch].
func (s *Sandbox) Endpoint(ctx context.Context) (Endpoint, error) {
	rec, err := s.Refresh(ctx)
	if err != nil {
		return Endpoint{}, err
	}
	return s.m.endpoint(rec), nil
}

// Touch records activity on the sandbox, postponing its idle stop.
func (s *Sandbox) Touch(ctx context.Context) error {
	rec, err := s.update(ctx, func(r *SandboxRecord) error {
		s.m.touch(r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch sandbox %d: %w", s.vmid, err)
	}
	s.set(rec)
	return nil
}
