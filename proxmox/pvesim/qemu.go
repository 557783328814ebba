package pvesim

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// AddTemplate creates a stopped template VM on node, as `qm template` would
// leave it: a linked-clone base disk scsi0 on local-lvm (8G), a cloud-init
// drive, net0 with a firewall flag, the guest agent enabled, 2 cores and
// 2048 MiB. cfg overrides or adds config keys; values are validated like a
// config update. It fails for an unknown node, a used VMID or an invalid
// key or value.
func (s *Server) AddTemplate(node string, vmid int, name string, cfg map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.c.hasNode(node) {
		return fmt.Errorf("add template %d: no such node %q", vmid, node)
	}
	if vmid < minVMID || vmid >= maxVMID {
		return fmt.Errorf("add template %d: vmid out of range", vmid)
	}
	if _, ok := s.c.vms[vmid]; ok {
		return fmt.Errorf("add template %d: VM %d already exists", vmid, vmid)
	}
	conf := s.templateConf(vmid, name)
	for k, v := range cfg {
		nv, errs := normalizeValue(k, v, s.c.newMAC)
		if errs != nil {
			return fmt.Errorf("add template %d: %s: %v", vmid, k, map[string]string(errs))
		}
		conf[k] = nv
	}
	s.c.vms[vmid] = newVM(vmid, node, conf)
	return nil
}

func (s *Server) templateConf(vmid int, name string) map[string]string {
	id := strconv.Itoa(vmid)
	return map[string]string{
		"name": name, "template": "1", "cores": "2", "sockets": "1", "memory": "2048",
		"ostype": "l26", "scsihw": "virtio-scsi-single", "agent": "1", "boot": "order=scsi0",
		"scsi0":   "local-lvm:base-" + id + "-disk-0,iothread=1,size=8G",
		"ide2":    "local-lvm:vm-" + id + "-cloudinit,media=cdrom",
		"net0":    "virtio=" + s.c.newMAC() + ",bridge=vmbr0,firewall=1",
		"smbios1": "uuid=" + s.c.newUUID(), "vmgenid": s.c.newUUID(),
		"serial0": "socket", "vga": "serial0", "ciuser": "debian", "ipconfig0": "ip=dhcp",
	}
}

func (s *Server) getQemuList(rq *request) (any, *apiError) {
	full, aerr := rq.boolParam("full")
	if aerr != nil {
		return nil, aerr
	}
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(s.c.vms)) {
		v := s.c.vms[id]
		if v.node != rq.vars["node"] {
			continue
		}
		m := s.vmStatus(v)
		if !full {
			delete(m, "qmpstatus")
		}
		out = append(out, m)
	}
	return out, nil
}

// vmStatus is the vmstatus hash shared by the list and status/current.
func (s *Server) vmStatus(v *vm) map[string]any {
	m := map[string]any{
		"vmid": v.id, "status": v.status(), "name": v.conf["name"], "cpus": v.cpus(),
		"maxmem": v.maxMem(), "maxdisk": v.maxDisk(), "disk": 0, "mem": 0, "memhost": 0,
		"cpu": 0.0, "uptime": v.uptimeSecs(), "netin": 0, "netout": 0, "diskread": 0,
		"diskwrite": 0, "qmpstatus": v.qmpStatus(),
	}
	if v.isTemplate() {
		m["template"] = 1
	}
	if l := v.conf["lock"]; l != "" {
		m["lock"] = l
	}
	if t := v.conf["tags"]; t != "" {
		m["tags"] = t
	}
	if v.status() == "running" {
		m["pid"] = 10000 + v.id
		m["mem"], m["cpu"] = v.maxMem()/4, 0.03
		m["running-machine"], m["running-qemu"] = "pc-i440fx-10.0+pve0", "10.0.2"
	}
	return m
}

func (s *Server) getStatusCurrent(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	m := s.vmStatus(v)
	m["ha"] = map[string]any{"managed": 0}
	if agentEnabled(v.conf["agent"]) {
		m["agent"] = 1
	}
	return m, nil
}

func (s *Server) getConfig(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	conf := v.conf
	if name := rq.str("snapshot"); name != "" {
		sn, ok := v.snaps[name]
		if !ok {
			return nil, fail("snapshot '%s' does not exist", name)
		}
		conf = sn.conf
	}
	out := typedConfig(conf)
	if _, ok := out["cipassword"]; ok {
		out["cipassword"] = "**********"
	}
	out["digest"] = confDigest(conf)
	return out, nil
}

func (s *Server) getPending(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	out := []map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(v.conf)) {
		out = append(out, map[string]any{"key": k, "value": typedValue(k, v.conf[k])})
	}
	return out, nil
}

// configParams are config-update parameters that are not config keys.
var configParams = []string{
	"node", "vmid", "delete", "revert", "digest", "skiplock", "background_delay",
}

var deleteSplitRE = regexp.MustCompile(`[,;\s]+`)

// configChange is a validated config update.
type configChange struct {
	set map[string]string
	del []string
}

// parseConfigChange validates a config update against the schema and the
// VM's state, with s.mu held.
func (s *Server) parseConfigChange(rq *request, v *vm) (*configChange, *apiError) {
	skip, aerr := rq.skipLock()
	if aerr != nil {
		return nil, aerr
	}
	ch := &configChange{set: map[string]string{}}
	errs := map[string]string{}
	for k := range rq.params {
		if slices.Contains(configParams, k) {
			continue
		}
		nv, kerrs := normalizeValue(k, rq.str(k), s.c.newMAC)
		if kerrs != nil {
			maps.Copy(errs, kerrs)
			continue
		}
		ch.set[k] = nv
	}
	for _, k := range deleteSplitRE.Split(strings.TrimSpace(rq.str("delete")), -1) {
		if k == "" {
			continue
		}
		if _, ok := lookupKey(k); !ok {
			errs["delete"] = fmt.Sprintf("invalid format - value '%s' is not a valid configuration key", k)
			continue
		}
		ch.del = append(ch.del, k)
	}
	if len(errs) > 0 {
		return nil, paramErr(errs)
	}
	return ch, s.checkConfigChange(rq, v, ch, skip)
}

func (s *Server) checkConfigChange(rq *request, v *vm, ch *configChange, skip bool) *apiError {
	if len(ch.set) == 0 && len(ch.del) == 0 && rq.str("revert") == "" {
		return fail("no options specified")
	}
	if d := rq.str("digest"); d != "" && d != v.digest() {
		return fail("checksum mismatch (file change by other user?)")
	}
	for _, k := range ch.del {
		if _, ok := ch.set[k]; ok {
			return paramErr1("delete", fmt.Sprintf("unable to delete '%s' - option is also set", k))
		}
	}
	if v.isTemplate() && hasDiskChange(ch) {
		return fail("you can't change the disks of a template")
	}
	return checkLock(v, skip)
}

func hasDiskChange(ch *configChange) bool {
	for k := range ch.set {
		if isDiskKey(k) {
			return true
		}
	}
	return false
}

// applyConfig applies a validated change at once.
// TODO: keep a pending section for running VMs (PVE hotplug rules); remove
// when a client depends on pending values.
func (v *vm) applyConfig(ch *configChange) {
	for _, k := range ch.del {
		delete(v.conf, k)
	}
	maps.Copy(v.conf, ch.set)
}

func (s *Server) putConfig(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	ch, aerr := s.parseConfigChange(rq, v)
	if aerr != nil {
		return nil, aerr
	}
	v.applyConfig(ch)
	s.log.Debug("config updated", "vmid", v.id, "set", len(ch.set), "deleted", len(ch.del))
	return nil, nil
}

func (s *Server) postConfig(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	ch, aerr := s.parseConfigChange(rq, v)
	if aerr != nil {
		return nil, aerr
	}
	upid := s.startTask(rq, taskSpec{
		typ: "qmconfig", id: vmidStr(v.id), node: v.node, flock: v,
		apply: func(t *task) (func(), string) {
			for k, val := range ch.set {
				t.logf("update VM %d: -%s %s", v.id, k, val)
			}
			v.applyConfig(ch)
			return nil, ""
		},
	})
	return upid, nil
}

func (s *Server) putResize(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	disk, size := rq.str("disk"), rq.str("size")
	cur, ok := v.conf[disk]
	if !isDiskKey(disk) {
		return nil, paramErr1("disk", notInEnum(disk, "ide0, scsi0, virtio0, sata0, efidisk0, ..."))
	}
	if !ok {
		return nil, fail("disk '%s' does not exist", disk)
	}
	newSize, aerr := resizeTarget(cur, size)
	if aerr != nil {
		return nil, aerr
	}
	if v.isTemplate() {
		return nil, fail("you can't resize a template")
	}
	skip, aerr := rq.skipLock()
	if aerr != nil {
		return nil, aerr
	}
	upid := s.startTask(rq, taskSpec{
		typ: "qmresize", id: vmidStr(v.id), node: v.node, flock: v,
		check: func(*task) string { return lockMsg(v, skip) },
		apply: func(t *task) (func(), string) {
			t.logf("Size of logical volume changed to %s.", formatSize(newSize))
			v.conf[disk] = setDiskOption(v.conf[disk], "size", formatSize(newSize))
			return nil, ""
		},
	})
	return upid, nil
}

// resizeTarget computes the new size of a disk for "+N" or "N" sizes.
func resizeTarget(disk, size string) (uint64, *apiError) {
	if strings.Contains(disk, "media=cdrom") {
		return 0, fail("you can't resize a cdrom")
	}
	cur := diskSizeBytes(disk)
	grow := strings.HasPrefix(size, "+")
	n, ok := parseSize(strings.TrimPrefix(size, "+"))
	if !ok {
		return 0, paramErr1("size", "value does not match the regex pattern")
	}
	if grow {
		return cur + n, nil
	}
	if n < cur {
		return 0, fail("shrinking disks is not supported")
	}
	return n, nil
}

// lockMsg is checkLock's text for in-task checks.
func lockMsg(v *vm, skip bool) string {
	if aerr := checkLock(v, skip); aerr != nil {
		return aerr.msg
	}
	return ""
}

func (s *Server) postTemplate(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	if v.isTemplate() {
		return nil, fail("you can't convert a template to a template")
	}
	if v.status() == "running" {
		return nil, fail("you can't convert a VM to template if VM is running")
	}
	if aerr := checkLock(v, false); aerr != nil {
		return nil, aerr
	}
	upid := s.startTask(rq, taskSpec{
		typ: "qmtemplate", id: vmidStr(v.id), node: v.node, flock: v,
		apply: func(t *task) (func(), string) {
			for k, val := range v.conf {
				if isDiskKey(k) && !strings.Contains(val, "media=cdrom") {
					v.conf[k] = strings.Replace(val, ":vm-", ":base-", 1)
				}
			}
			v.conf["template"] = "1"
			return nil, ""
		},
	})
	return upid, nil
}

func (s *Server) deleteVM(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	skip, aerr := rq.skipLock()
	if aerr != nil {
		return nil, aerr
	}
	if v.status() == "running" {
		return nil, fail("VM %d is running - destroy failed", v.id)
	}
	if v.conf["protection"] == "1" {
		return nil, fail("can't remove VM %d - protection mode enabled", v.id)
	}
	upid := s.startTask(rq, taskSpec{
		typ: "qmdestroy", id: vmidStr(v.id), node: v.node, flock: v, lock: "destroyed",
		check: func(*task) string { return lockMsg(v, skip) },
		apply: func(t *task) (func(), string) {
			return s.destroyVM(t, v), ""
		},
	})
	return upid, nil
}

// destroyVM removes a VM from the cluster, with s.mu held, and returns the
// cleanup of its guest files.
func (s *Server) destroyVM(t *task, v *vm) func() {
	for k, val := range v.conf {
		if isDiskKey(k) && !strings.Contains(val, "media=cdrom") {
			t.logf("Removing image: 100%% complete...done.")
		}
	}
	t.logf("purging VM %d from related configurations..", v.id)
	if s.c.vms[v.id] == v {
		delete(s.c.vms, v.id)
	}
	g := v.guest
	if g == nil {
		return nil
	}
	delete(s.c.ips, g.ip.String())
	return func() { s.removeGuest(g) }
}
