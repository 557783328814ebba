package pvesim

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
)

// Node capacity reported by the simulator.
const (
	nodeCPUs    = 16
	nodeMem     = 64 << 30
	nodeBaseMem = 2 << 30
	nodeDisk    = 100 << 30
	rootUsed    = 8 << 30
	storageSize = 1 << 40
)

// storages are the storages every node has: name, plugin type, shared.
var storages = []struct {
	name, typ, content string
	shared             bool
}{
	{"local", "dir", "iso,vztmpl,backup,snippets", false},
	{"local-lvm", "lvmthin", "images,rootdir", false},
	{"shared", "nfs", "images,rootdir", true},
}

func storageShared(name string) (shared, ok bool) {
	for _, st := range storages {
		if st.name == name {
			return st.shared, true
		}
	}
	return false, false
}

// SetNodeOnline marks a node online or offline. Requests for an offline
// node's paths fail with 595 like pveproxy's failed proxying, and lists show
// it "offline". It fails for an unknown node.
func (s *Server) SetNodeOnline(node string, online bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.c.hasNode(node) {
		return fmt.Errorf("set node %s online: no such node", node)
	}
	s.c.offline[node] = !online
	return nil
}

func (s *Server) getVersion(rq *request) (any, *apiError) {
	return map[string]any{"version": "9.1.1", "release": "9.1", "repoid": "42ab42ab"}, nil
}

// nodeUsage sums memory and CPUs of the running VMs on a node.
func (s *Server) nodeUsage(node string) (mem uint64, cpus int) {
	mem = nodeBaseMem
	for _, v := range s.c.vms {
		if v.node == node && v.status() == "running" {
			mem += v.maxMem()
			cpus += v.cpus()
		}
	}
	return mem, cpus
}

func (s *Server) nodeCPU(cpus int) float64 {
	return min(0.01+float64(cpus)*0.02, 1)
}

func (s *Server) nodeStatusWord(n string) string {
	if s.c.offline[n] {
		return "offline"
	}
	return "online"
}

func (s *Server) getNodes(rq *request) (any, *apiError) {
	out := []map[string]any{}
	for _, n := range s.c.nodes {
		mem, cpus := s.nodeUsage(n)
		out = append(out, map[string]any{
			"node": n, "status": s.nodeStatusWord(n), "id": "node/" + n, "type": "node",
			"level": "", "cpu": s.nodeCPU(cpus), "maxcpu": nodeCPUs, "mem": mem,
			"maxmem": uint64(nodeMem), "disk": uint64(8 << 30), "maxdisk": uint64(nodeDisk),
			"uptime": s.uptime(), "ssl_fingerprint": s.pki.fingerprint(),
		})
	}
	return out, nil
}

func (s *Server) uptime() int64 { return int64(time.Since(s.c.booted)/time.Second) + 3600 }

func (s *Server) getNodeStatus(rq *request) (any, *apiError) {
	mem, cpus := s.nodeUsage(rq.vars["node"])
	return map[string]any{
		"cpu": s.nodeCPU(cpus), "wait": 0.0, "idle": 0, "uptime": s.uptime(),
		"loadavg": []string{"0.12", "0.08", "0.05"},
		"memory": map[string]any{
			"total": uint64(nodeMem), "used": mem, "free": nodeMem - mem, "available": nodeMem - mem,
		},
		"swap": map[string]any{"total": 0, "used": 0, "free": 0},
		"rootfs": map[string]any{
			"total": uint64(nodeDisk), "used": uint64(rootUsed),
			"free": uint64(nodeDisk - rootUsed), "avail": uint64(nodeDisk - rootUsed),
		},
		"ksm": map[string]any{"shared": 0},
		"cpuinfo": map[string]any{
			"cpus": nodeCPUs, "cores": nodeCPUs / 2, "sockets": 1, "model": "pvesim virtual CPU",
			"mhz": "2400.000", "hvm": "1", "flags": "fpu vme de pse tsc msr pae", "user_hz": 100,
		},
		"kversion":   "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2",
		"pveversion": "pve-manager/9.1.1/42ab42ab",
		"current-kernel": map[string]any{
			"sysname": "Linux", "release": "6.14.8-2-pve", "machine": "x86_64",
		},
		"boot-info": map[string]any{"mode": "efi", "secureboot": 0},
	}, nil
}

func (s *Server) getClusterStatus(rq *request) (any, *apiError) {
	out := []map[string]any{}
	if len(s.c.nodes) > 1 {
		out = append(out, map[string]any{
			"type": "cluster", "id": "cluster", "name": "pvesim", "nodes": len(s.c.nodes),
			"quorate": boolInt(!s.c.noQuorum), "version": len(s.c.nodes) + 1,
		})
	}
	for i, n := range s.c.nodes {
		online := 1
		if s.c.offline[n] {
			online = 0
		}
		out = append(out, map[string]any{
			"type": "node", "id": "node/" + n, "name": n, "nodeid": i + 1,
			"ip": fmt.Sprintf("127.0.0.%d", i+1), "local": boolInt(i == 0), "online": online, "level": "",
		})
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *Server) getClusterResources(rq *request) (any, *apiError) {
	typ := rq.str("type")
	switch typ {
	case "", "vm", "node", "storage", "sdn":
	default:
		return nil, paramErr1("type", notInEnum(typ, "vm, storage, node, sdn"))
	}
	out := []map[string]any{}
	if typ == "" || typ == "node" {
		out = append(out, s.nodeResources()...)
	}
	if typ == "" || typ == "storage" {
		out = append(out, s.storageResources()...)
	}
	if typ == "" || typ == "vm" {
		out = append(out, s.vmResources()...)
	}
	return out, nil
}

// vmResources returns the VM rows, from the cache while it is younger than
// Config.ResourcesLag.
func (s *Server) vmResources() []map[string]any {
	lag := s.cfg.ResourcesLag
	if lag > 0 && s.c.resCache != nil && time.Since(s.c.resTime) < lag {
		return s.c.resCache
	}
	rows := make([]map[string]any, 0, len(s.c.vms))
	for _, id := range slices.Sorted(maps.Keys(s.c.vms)) {
		rows = append(rows, s.vmResource(s.c.vms[id]))
	}
	s.c.resCache, s.c.resTime = rows, time.Now()
	return rows
}

func (s *Server) nodeResources() []map[string]any {
	var out []map[string]any
	for _, n := range s.c.nodes {
		mem, cpus := s.nodeUsage(n)
		out = append(out, map[string]any{
			"id": "node/" + n, "type": "node", "node": n, "status": s.nodeStatusWord(n),
			"cpu": s.nodeCPU(cpus), "maxcpu": nodeCPUs, "mem": mem, "maxmem": uint64(nodeMem),
			"disk": uint64(8 << 30), "maxdisk": uint64(nodeDisk), "uptime": s.uptime(),
			"level": "", "cgroup-mode": 2,
		})
	}
	return out
}

func (s *Server) storageResources() []map[string]any {
	var out []map[string]any
	for _, n := range s.c.nodes {
		for _, st := range storages {
			out = append(out, map[string]any{
				"id": "storage/" + n + "/" + st.name, "type": "storage", "node": n,
				"storage": st.name, "status": "available", "plugintype": st.typ,
				"content": st.content, "shared": boolInt(st.shared),
				"disk": uint64(0), "maxdisk": uint64(storageSize),
			})
		}
	}
	return out
}

func (s *Server) vmResource(v *vm) map[string]any {
	m := map[string]any{
		"id": "qemu/" + strconv.Itoa(v.id), "type": "qemu", "vmid": v.id, "node": v.node,
		"name": v.conf["name"], "status": v.status(), "template": boolInt(v.isTemplate()),
		"maxcpu": v.cpus(), "maxmem": v.maxMem(), "maxdisk": v.maxDisk(),
		"cpu": 0.0, "mem": 0, "disk": 0, "netin": 0, "netout": 0,
		"diskread": 0, "diskwrite": 0, "uptime": v.uptimeSecs(),
	}
	if v.status() == "running" {
		m["cpu"], m["mem"] = 0.03, v.maxMem()/4
	}
	if l := v.conf["lock"]; l != "" {
		m["lock"] = l
	}
	if t := v.conf["tags"]; t != "" {
		m["tags"] = t
	}
	return m
}

func (v *vm) uptimeSecs() int64 {
	if v.status() != "running" {
		return 0
	}
	return int64(time.Since(v.started) / time.Second)
}

const (
	minVMID = 100
	maxVMID = 1000000
)

func (s *Server) getNextID(rq *request) (any, *apiError) {
	if rq.has("vmid") {
		id, aerr := rq.intParam("vmid", 0)
		if aerr != nil {
			return nil, aerr
		}
		if _, taken := s.c.vms[id]; taken {
			return nil, paramErr1("vmid", fmt.Sprintf("VM %d already exists", id))
		}
		return strconv.Itoa(id), nil
	}
	if s.nextIDFaultLocked(rq) {
		if id, ok := s.takenID(); ok {
			return strconv.Itoa(id), nil
		}
	}
	for id := minVMID; id < maxVMID; id++ {
		if _, taken := s.c.vms[id]; !taken {
			return strconv.Itoa(id), nil
		}
	}
	return nil, fail(
		"unable to get any free VMID in range [%d, %d]", minVMID, maxVMID)
}

// takenID picks the VMID a racing client would have taken: the most
// recently created VM, else the lowest existing VMID.
func (s *Server) takenID() (int, bool) {
	if _, ok := s.c.vms[s.c.lastNew]; ok {
		return s.c.lastNew, true
	}
	ids := slices.Sorted(maps.Keys(s.c.vms))
	if len(ids) == 0 {
		return 0, false
	}
	return ids[0], true
}

// SetQuorate sets whether the cluster has quorum. Without quorum every
// write fails with 500 "cluster not ready - no quorum?" while reads still
// work, and /cluster/status reports quorate 0.
func (s *Server) SetQuorate(quorate bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.c.noQuorum = !quorate
}

// SetLock sets (or with "" clears) the config lock of a VM, as a crashed
// worker would leave it; clients must unlock it (PUT config delete=lock with
// skiplock, root@pam only). It fails for an unknown VM or a lock value PVE
// does not know.
func (s *Server) SetLock(vmid int, lock string) error {
	switch lock {
	case "", "backup", "clone", "create", "migrate", "rollback", "snapshot",
		"snapshot-delete", "suspending", "suspended":
	default:
		return fmt.Errorf("set lock of vm %d: unknown lock %q", vmid, lock)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.c.vms[vmid]
	if !ok {
		return fmt.Errorf("set lock of vm %d: no such vm", vmid)
	}
	if lock == "" {
		delete(v.conf, "lock")
	} else {
		v.conf["lock"] = lock
	}
	return nil
}
