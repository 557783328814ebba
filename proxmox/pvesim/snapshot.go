package pvesim

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

var snapNameRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_\-]+$`)

// snapshotOnlyKeys are config keys PVE keeps only in snapshot sections.
var snapshotOnlyKeys = map[string]keyType{
	"snaptime": tInt, "parent": tString, "runningmachine": tString, "runningcpu": tString,
	"snapstate": tString,
}

func (s *Server) getSnapshots(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	out := []map[string]any{}
	for _, sn := range v.snapList() {
		m := map[string]any{
			"name": sn.name, "snaptime": sn.time.Unix(), "vmstate": boolInt(sn.vmstate),
			"description": sn.description,
		}
		if sn.parent != "" {
			m["parent"] = sn.parent
		}
		out = append(out, m)
	}
	cur := map[string]any{
		"name": "current", "description": "You are here!", "digest": v.digest(),
		"running": boolInt(v.status() == "running"),
	}
	if v.parent != "" {
		cur["parent"] = v.parent
	}
	return append(out, cur), nil
}

func (s *Server) postSnapshot(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	name := rq.str("snapname")
	if aerr := checkSnapName(name); aerr != nil {
		return nil, aerr
	}
	withRAM, aerr := rq.boolParam("vmstate")
	if aerr != nil {
		return nil, aerr
	}
	desc := rq.str("description")
	upid := s.startTask(rq, taskSpec{
		typ: "qmsnapshot", id: vmidStr(v.id), node: v.node, flock: v, lock: "snapshot",
		check: func(*task) string {
			if v.isTemplate() {
				return "you can't take a snapshot if it's a template"
			}
			if msg := lockMsg(v, false); msg != "" {
				return msg
			}
			if _, ok := v.snaps[name]; ok {
				return fmt.Sprintf("snapshot name '%s' already used", name)
			}
			return ""
		},
		apply: func(t *task) (func(), string) { return s.takeSnapshot(t, v, name, desc, withRAM), "" },
	})
	return upid, nil
}

func checkSnapName(name string) *apiError {
	switch {
	case name == "":
		return paramErr1("snapname", "property is missing and it is not optional")
	case name == "current" || name == "pending":
		return fail("unable to use snapshot name '%s' (reserved name)", name)
	case len(name) > 40 || !snapNameRE.MatchString(name):
		return paramErr1("snapname", fmt.Sprintf("invalid format - invalid configuration ID '%s'", name))
	}
	return nil
}

// takeSnapshot records a snapshot, with s.mu held, and returns the copy of
// the guest's home directory.
func (s *Server) takeSnapshot(t *task, v *vm, name, desc string, withRAM bool) func() {
	now := time.Now()
	sn := &snapshot{
		name: name, parent: v.parent, description: desc, time: now, seq: len(v.snaps),
		vmstate: withRAM && v.status() == "running", conf: maps.Clone(v.conf),
	}
	delete(sn.conf, "lock")
	sn.conf["snaptime"] = fmt.Sprint(now.Unix())
	if sn.parent != "" {
		sn.conf["parent"] = sn.parent
	}
	if sn.vmstate {
		t.logf("saving VM state and RAM using storage 'local-lvm'")
		sn.conf["vmstate"] = fmt.Sprintf("local-lvm:vm-%d-state-%s", v.id, name)
	}
	t.logf("snapshotting 'drive-scsi0' (%s)", v.conf["scsi0"])
	v.snaps[name] = sn
	v.parent = name
	g := v.guest
	if g == nil {
		return nil
	}
	sn.homeCopy = filepath.Join(g.base, "snap-"+name)
	return func() { copySnapshotHome(s, g, sn) }
}

func copySnapshotHome(s *Server, g *guest, sn *snapshot) {
	_ = os.RemoveAll(sn.homeCopy)
	if err := copyTree(g.home, sn.homeCopy); err != nil {
		s.log.Warn("copy guest home for snapshot", "snapshot", sn.name, "err", err)
	}
}

func (s *Server) snapAt(rq *request) (*vm, *snapshot, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, nil, aerr
	}
	name := rq.vars["snap"]
	sn, ok := v.snaps[name]
	if !ok {
		return v, nil, fail("snapshot '%s' does not exist", name)
	}
	return v, sn, nil
}

func (s *Server) postRollback(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	name := rq.vars["snap"]
	start, aerr := rq.boolParam("start")
	if aerr != nil {
		return nil, aerr
	}
	upid := s.startTask(rq, taskSpec{
		typ: "qmrollback", id: vmidStr(v.id), node: v.node, flock: v, lock: "rollback",
		check: func(*task) string {
			if msg := lockMsg(v, false); msg != "" {
				return msg
			}
			if _, ok := v.snaps[name]; !ok {
				return fmt.Sprintf("snapshot '%s' does not exist", name)
			}
			return ""
		},
		apply: func(t *task) (func(), string) { return s.rollback(t, v, v.snaps[name], start), "" },
	})
	return upid, nil
}

// rollback restores a snapshot, with s.mu held: config and parent now,
// guest files and power state in the returned function. The VM runs
// afterwards only when the snapshot has RAM or start is set.
func (s *Server) rollback(t *task, v *vm, sn *snapshot, start bool) func() {
	var stop func()
	if v.status() == "running" || v.run == stPaused {
		stop = s.powerOff(v)
	}
	v.run = stStopped
	v.conf = maps.Clone(sn.conf)
	for k := range snapshotOnlyKeys {
		delete(v.conf, k)
	}
	delete(v.conf, "vmstate")
	v.conf["lock"] = "rollback"
	v.parent = sn.name
	restore := s.restoreHomeFn(v, sn)
	var on func()
	switch {
	case sn.vmstate:
		t.logf("resuming VM from saved state")
		on = s.powerOn(v, true)
	case start:
		on = s.powerOn(v, false)
	}
	return chain(stop, restore, on)
}

func (s *Server) restoreHomeFn(v *vm, sn *snapshot) func() {
	g := v.guest
	if g == nil || sn.homeCopy == "" {
		return nil
	}
	return func() {
		if err := replaceTree(sn.homeCopy, g.home); err != nil {
			s.log.Warn("restore guest home", "vmid", v.id, "snapshot", sn.name, "err", err)
		}
	}
}

func (s *Server) deleteSnapshot(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	name := rq.vars["snap"]
	force, aerr := rq.boolParam("force")
	if aerr != nil {
		return nil, aerr
	}
	upid := s.startTask(rq, taskSpec{
		typ: "qmdelsnapshot", id: vmidStr(v.id), node: v.node, flock: v, lock: "snapshot-delete",
		check: func(*task) string {
			if msg := lockMsg(v, force); msg != "" {
				return msg
			}
			if _, ok := v.snaps[name]; !ok {
				return fmt.Sprintf("snapshot '%s' does not exist", name)
			}
			return ""
		},
		apply: func(t *task) (func(), string) { return s.dropSnapshot(v, name), "" },
	})
	return upid, nil
}

// dropSnapshot removes a snapshot and re-parents its children, with s.mu
// held, and returns the removal of its file copy.
func (s *Server) dropSnapshot(v *vm, name string) func() {
	sn := v.snaps[name]
	delete(v.snaps, name)
	for _, o := range v.snaps {
		if o.parent == name {
			o.parent = sn.parent
			o.conf["parent"] = sn.parent
		}
	}
	if v.parent == name {
		v.parent = sn.parent
	}
	if sn.homeCopy == "" {
		return nil
	}
	return func() { _ = os.RemoveAll(sn.homeCopy) }
}

func (s *Server) getSnapshotConfig(rq *request) (any, *apiError) {
	_, sn, aerr := s.snapAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	out := typedConfig(sn.conf)
	out["description"] = sn.description
	out["digest"] = confDigest(sn.conf)
	return out, nil
}

func (s *Server) putSnapshotConfig(rq *request) (any, *apiError) {
	_, sn, aerr := s.snapAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	if rq.has("description") {
		sn.description = rq.str("description")
	}
	return nil, nil
}
