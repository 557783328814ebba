package pvesim

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// cloneReq is a validated clone request.
type cloneReq struct {
	src     *vm
	newid   int
	full    bool
	target  string
	storage string
	name    string
	desc    string
	hasDesc bool
	snap    *snapshot
}

func (s *Server) postClone(rq *request) (any, *apiError) {
	src, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	cr, aerr := s.parseClone(rq, src)
	if aerr != nil {
		return nil, aerr
	}
	if other, ok := s.c.vms[cr.newid]; ok {
		if other.node == src.node {
			return nil, fail(
				"unable to create VM %d: config file already exists", cr.newid)
		}
		return s.failedCloneTask(rq, cr, other), nil
	}
	return s.startClone(rq, cr), nil
}

func (s *Server) parseClone(rq *request, src *vm) (*cloneReq, *apiError) {
	cr := &cloneReq{src: src, target: src.node, storage: rq.str("storage")}
	if !rq.has("newid") {
		return nil, paramErr1("newid", "property is missing and it is not optional")
	}
	var aerr *apiError
	if cr.newid, aerr = rq.intParam("newid", 0); aerr != nil {
		return nil, aerr
	}
	if cr.newid < minVMID || cr.newid > 999999999 {
		return nil, paramErr1("newid", "value must have a minimum value of 100")
	}
	cr.full = !src.isTemplate()
	if rq.has("full") {
		if cr.full, aerr = rq.boolParam("full"); aerr != nil {
			return nil, aerr
		}
	}
	if aerr := s.parseCloneNames(rq, cr); aerr != nil {
		return nil, aerr
	}
	if aerr := s.checkCloneTarget(rq, cr); aerr != nil {
		return nil, aerr
	}
	return cr, checkLock(src, false)
}

func (s *Server) parseCloneNames(rq *request, cr *cloneReq) *apiError {
	cr.name = rq.str("name")
	if cr.name != "" && !dnsNameRE.MatchString(cr.name) {
		return paramErr1("name", "invalid format - value does not look like a valid DNS name")
	}
	if cr.name == "" {
		cr.name = "Copy-of-VM-" + cr.src.conf["name"]
	}
	cr.desc, cr.hasDesc = rq.str("description"), rq.has("description")
	if sn := rq.str("snapname"); sn != "" {
		snap, ok := cr.src.snaps[sn]
		if !ok {
			return fail("snapshot '%s' does not exist", sn)
		}
		cr.snap = snap
	}
	return nil
}

func (s *Server) checkCloneTarget(rq *request, cr *cloneReq) *apiError {
	if t := rq.str("target"); t != "" {
		if !s.c.hasNode(t) {
			return fail("no such cluster node '%s'", t)
		}
		cr.target = t
	}
	if cr.storage != "" {
		if !cr.full {
			return fail("parameter 'storage' not allowed for linked clones")
		}
		if _, ok := storageShared(cr.storage); !ok {
			return fail("storage '%s' does not exist", cr.storage)
		}
	}
	if !cr.full && !cr.src.isTemplate() {
		return fail("Linked clone feature is not supported for drive 'scsi0'")
	}
	if cr.target != cr.src.node && !cloneDisksShared(cr) {
		return fail(
			"can't clone VM to node '%s' (VM uses local storage)", cr.target)
	}
	return nil
}

// cloneDisksShared reports whether every disk of the clone ends up on
// shared storage.
func cloneDisksShared(cr *cloneReq) bool {
	for k, v := range cr.src.conf {
		if !isDiskKey(k) || strings.Contains(v, "media=cdrom") {
			continue
		}
		st := volStorage(v)
		if cr.full && cr.storage != "" {
			st = cr.storage
		}
		if shared, _ := storageShared(st); !shared {
			return false
		}
	}
	return true
}

func volStorage(disk string) string {
	st, _, _ := strings.Cut(propList(disk)[0][1], ":")
	return st
}

// failedCloneTask models a clone whose newid exists on another node: the
// config file cannot be created there, and the task fails.
func (s *Server) failedCloneTask(rq *request, cr *cloneReq, other *vm) string {
	return s.startTask(rq, taskSpec{
		typ: "qmclone", id: vmidStr(cr.src.id), node: cr.src.node, faultVMIDs: []int{cr.newid},
		check: func(*task) string {
			return fmt.Sprintf("clone failed: unable to create VM %d - VM %d already exists on node '%s'",
				cr.newid, cr.newid, other.node)
		},
	})
}

func (s *Server) startClone(rq *request, cr *cloneReq) string {
	nv := newVM(cr.newid, cr.src.node, s.cloneConf(cr))
	nv.conf["lock"] = "clone"
	nv.fw = cr.src.fw.clone()
	s.c.vms[cr.newid] = nv
	s.c.lastNew = cr.newid
	sp := taskSpec{
		typ: "qmclone", id: vmidStr(cr.src.id), node: cr.src.node,
		lock: "clone", lockVM: nv, faultVMIDs: []int{cr.newid},
		apply: func(t *task) (func(), string) { return s.finishClone(t, cr, nv) },
		cleanup: func() {
			if s.c.vms[nv.id] == nv {
				delete(s.c.vms, nv.id)
			}
		},
	}
	if !cr.src.isTemplate() {
		sp.flock = cr.src
	}
	return s.startTask(rq, sp)
}

// finishClone moves the new VM to its target node and gives it a guest.
func (s *Server) finishClone(t *task, cr *cloneReq, nv *vm) (func(), string) {
	for k, v := range nv.conf {
		if isDiskKey(k) && !strings.Contains(v, "media=cdrom") {
			t.logf("create %s clone of drive %s (%s)", cloneKind(cr.full), k, cr.src.conf[k])
		}
	}
	nv.node = cr.target
	g, err := s.newGuest(nv)
	if err != nil {
		return nil, "clone failed: " + err.Error()
	}
	nv.guest = g
	srcHome := ""
	if cr.src.guest != nil {
		srcHome = cr.src.guest.home
	}
	if srcHome == "" {
		return nil, ""
	}
	return func() { _ = copyTree(srcHome, g.home) }, ""
}

func cloneKind(full bool) string {
	if full {
		return "full"
	}
	return "linked"
}

var (
	uuidRE    = regexp.MustCompile(`uuid=[0-9a-fA-F-]+`)
	volNameRE = regexp.MustCompile(`^(base|vm)-\d+-(disk-\d+|cloudinit)(\.\w+)?$`)
)

// cloneConf derives the new VM's config the way qemu-server's clone does.
func (s *Server) cloneConf(cr *cloneReq) map[string]string {
	srcConf := cr.src.conf
	if cr.snap != nil {
		srcConf = cr.snap.conf
	}
	conf := map[string]string{}
	for k, v := range srcConf {
		switch {
		case k == "template", k == "lock", k == "parent", k == "vmstate", k == "snaptime",
			strings.HasPrefix(k, "unused"):
			continue
		case isNetKey(k):
			conf[k] = s.newNetMAC(k, v)
		case isDiskKey(k) && (!strings.Contains(v, "media=cdrom") || strings.Contains(v, "cloudinit")):
			conf[k] = cloneDisk(v, cr)
		default:
			conf[k] = v
		}
	}
	conf["name"] = cr.name
	if cr.hasDesc {
		conf["description"] = cr.desc
	}
	if sm, ok := conf["smbios1"]; ok {
		conf["smbios1"] = uuidRE.ReplaceAllString(sm, "uuid="+s.c.newUUID())
	}
	if g, ok := conf["vmgenid"]; ok && g != "0" {
		conf["vmgenid"] = s.c.newUUID()
	}
	return conf
}

func (s *Server) newNetMAC(k, v string) string {
	model, _, rest, errs := parseNet(k, v)
	if errs != nil {
		return v
	}
	return formatNet(model, s.c.newMAC(), rest)
}

// cloneDisk renames a disk volume for the clone: linked clones reference
// the base volume, full clones get their own (on storage if given).
func cloneDisk(v string, cr *cloneReq) string {
	kvs := propList(v)
	st, vol, ok := strings.Cut(kvs[0][1], ":")
	if !ok || !volNameRE.MatchString(vol) {
		return v
	}
	id := strconv.Itoa(cr.newid)
	suffix := vol[strings.LastIndex(vol, "-")+1:]
	newVol := "vm-" + id + "-disk-" + suffix
	if strings.HasSuffix(vol, "cloudinit") {
		newVol = "vm-" + id + "-cloudinit"
	} else if !cr.full {
		newVol = vol + "/" + newVol
	} else if cr.storage != "" {
		st = cr.storage
	}
	out := st + ":" + newVol
	for _, kv := range kvs[1:] {
		out += "," + kv[0] + "=" + kv[1]
	}
	return out
}
