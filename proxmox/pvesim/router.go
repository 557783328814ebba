package pvesim

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// handler serves one route with Server.mu held. Work that must not run
// under the lock (starting and stopping guests) goes to rq.after.
type handler func(s *Server, rq *request) (any, *apiError)

type route struct {
	method  string
	pattern string
	h       handler
}

const (
	qemuPath = "/nodes/{node}/qemu/{vmid}"
	fwPath   = qemuPath + "/firewall"
)

// routes lists the implemented endpoints; anything else is a 501.
// TODO: POST /nodes/{node}/qemu (create), cloudinit and migrate; remove when
// a client needs VMs that do not come from a template.
var routes = []route{
	{"GET", "/version", (*Server).getVersion},
	{"GET", "/nodes", (*Server).getNodes},
	{"GET", "/nodes/{node}/status", (*Server).getNodeStatus},
	{"GET", "/cluster/status", (*Server).getClusterStatus},
	{"GET", "/cluster/resources", (*Server).getClusterResources},
	{"GET", "/cluster/nextid", (*Server).getNextID},
	{"GET", "/cluster/tasks", (*Server).getClusterTasks},
	{"GET", "/cluster/firewall/options", (*Server).getClusterFWOptions},
	{"PUT", "/cluster/firewall/options", (*Server).putClusterFWOptions},
	{"GET", "/cluster/firewall/groups", (*Server).getGroups},
	{"POST", "/cluster/firewall/groups", (*Server).postGroup},
	{"GET", "/cluster/firewall/groups/{group}", (*Server).getGroupRules},
	{"POST", "/cluster/firewall/groups/{group}", (*Server).postGroupRule},
	{"DELETE", "/cluster/firewall/groups/{group}", (*Server).deleteGroup},
	{"GET", "/cluster/firewall/groups/{group}/{pos}", (*Server).getGroupRule},
	{"PUT", "/cluster/firewall/groups/{group}/{pos}", (*Server).putGroupRule},
	{"DELETE", "/cluster/firewall/groups/{group}/{pos}", (*Server).deleteGroupRule},
	{"GET", "/nodes/{node}/tasks", (*Server).getNodeTasks},
	{"GET", "/nodes/{node}/tasks/{upid}/status", (*Server).getTaskStatus},
	{"GET", "/nodes/{node}/tasks/{upid}/log", (*Server).getTaskLog},
	{"DELETE", "/nodes/{node}/tasks/{upid}", (*Server).deleteTask},
	{"GET", "/nodes/{node}/qemu", (*Server).getQemuList},
	{"DELETE", qemuPath, (*Server).deleteVM},
	{"GET", qemuPath + "/status/current", (*Server).getStatusCurrent},
	{"POST", qemuPath + "/status/{action}", (*Server).postStatus},
	{"GET", qemuPath + "/config", (*Server).getConfig},
	{"POST", qemuPath + "/config", (*Server).postConfig},
	{"PUT", qemuPath + "/config", (*Server).putConfig},
	{"GET", qemuPath + "/pending", (*Server).getPending},
	{"POST", qemuPath + "/clone", (*Server).postClone},
	{"POST", qemuPath + "/template", (*Server).postTemplate},
	{"PUT", qemuPath + "/resize", (*Server).putResize},
	{"GET", qemuPath + "/snapshot", (*Server).getSnapshots},
	{"POST", qemuPath + "/snapshot", (*Server).postSnapshot},
	{"DELETE", qemuPath + "/snapshot/{snap}", (*Server).deleteSnapshot},
	{"POST", qemuPath + "/snapshot/{snap}/rollback", (*Server).postRollback},
	{"GET", qemuPath + "/snapshot/{snap}/config", (*Server).getSnapshotConfig},
	{"PUT", qemuPath + "/snapshot/{snap}/config", (*Server).putSnapshotConfig},
	{"GET", qemuPath + "/agent/{cmd}", (*Server).agentGet},
	{"POST", qemuPath + "/agent/{cmd}", (*Server).agentPost},
	{"GET", fwPath + "/options", (*Server).getVMFWOptions},
	{"PUT", fwPath + "/options", (*Server).putVMFWOptions},
	{"GET", fwPath + "/rules", (*Server).getVMRules},
	{"POST", fwPath + "/rules", (*Server).postVMRule},
	{"GET", fwPath + "/rules/{pos}", (*Server).getVMRule},
	{"PUT", fwPath + "/rules/{pos}", (*Server).putVMRule},
	{"DELETE", fwPath + "/rules/{pos}", (*Server).deleteVMRule},
	{"GET", fwPath + "/ipset", (*Server).getIPSets},
	{"POST", fwPath + "/ipset", (*Server).postIPSet},
	{"GET", fwPath + "/ipset/{name}", (*Server).getIPSetEntries},
	{"POST", fwPath + "/ipset/{name}", (*Server).postIPSetEntry},
	{"DELETE", fwPath + "/ipset/{name}", (*Server).deleteIPSet},
	{"GET", fwPath + "/ipset/{name}/{cidr...}", (*Server).getIPSetEntry},
	{"DELETE", fwPath + "/ipset/{name}/{cidr...}", (*Server).deleteIPSetEntry},
}

// route finds the handler for rq, runs it under Server.mu and then runs the
// deferred work outside the lock.
func (s *Server) route(rq *request) (any, *apiError) {
	segs := splitPath(rq.path)
	for _, rt := range routes {
		if rt.method != rq.method {
			continue
		}
		vars, ok := matchPath(splitPath(rt.pattern), segs)
		if !ok {
			continue
		}
		rq.vars = vars
		return s.runHandler(rq, rt.h)
	}
	return nil, errf(http.StatusNotImplemented, "Method '%s %s' not implemented", rq.method, rq.path)
}

func (s *Server) runHandler(rq *request, h handler) (any, *apiError) {
	var after []func()
	rq.after = &after
	s.mu.Lock()
	data, aerr := s.checkNode(rq)
	if aerr == nil {
		aerr = s.checkQuorum(rq)
	}
	if aerr == nil {
		data, aerr = h(s, rq)
	}
	s.mu.Unlock()
	for _, f := range after {
		f()
	}
	return data, aerr
}

// checkNode fails requests for unknown or offline nodes the way pveproxy
// does before any handler runs.
func (s *Server) checkNode(rq *request) (any, *apiError) {
	n, ok := rq.vars["node"]
	if !ok {
		return nil, nil
	}
	if !s.c.hasNode(n) {
		return nil, fail("hostname lookup '%s' failed - failed to get address info for: %s: "+
			"Name or service not known", n, n)
	}
	if s.c.offline[n] {
		return nil, errf(595, "Connection refused")
	}
	return nil, nil
}

// checkQuorum fails writes while the cluster has no quorum.
func (s *Server) checkQuorum(rq *request) *apiError {
	if s.c.noQuorum && rq.method != "GET" {
		return fail("cluster not ready - no quorum?")
	}
	return nil
}

func splitPath(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}

// matchPath matches path segments against a pattern; "{x}" captures one
// segment and a final "{x...}" captures the rest.
func matchPath(pat, segs []string) (map[string]string, bool) {
	vars := map[string]string{}
	for i, p := range pat {
		if i >= len(segs) {
			return nil, false
		}
		if name, ok := strings.CutSuffix(strings.Trim(p, "{}"), "..."); ok && strings.HasPrefix(p, "{") {
			vars[name] = strings.Join(segs[i:], "/")
			return vars, true
		}
		if strings.HasPrefix(p, "{") {
			if segs[i] == "" {
				return nil, false
			}
			vars[strings.Trim(p, "{}")] = segs[i]
			continue
		}
		if p != segs[i] {
			return nil, false
		}
	}
	return vars, len(pat) == len(segs)
}

// later queues f to run after the handler released Server.mu.
func (rq *request) later(f func()) { *rq.after = append(*rq.after, f) }

// vmAt returns the VM addressed by the path, failing like PVE when its
// config is not on the node in the URL.
func (s *Server) vmAt(rq *request) (*vm, *apiError) {
	raw := rq.vars["vmid"]
	id, err := strconv.Atoi(raw)
	if err != nil || id < 100 {
		return nil, paramErr1("vmid", fmt.Sprintf("type check ('integer') failed - got '%s'", raw))
	}
	v := s.c.vms[id]
	if v == nil || v.node != rq.vars["node"] {
		return nil, fail(
			"Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", rq.vars["node"], id)
	}
	return v, nil
}

// checkLock is PVE's check_lock: a config lock refuses the operation unless
// skiplock is set.
func checkLock(v *vm, skip bool) *apiError {
	if l := v.conf["lock"]; l != "" && !skip {
		return fail("VM is locked (%s)", l)
	}
	return nil
}

// skipLock reads the skiplock parameter, which only root@pam may use.
func (rq *request) skipLock() (bool, *apiError) {
	skip, aerr := rq.boolParam("skiplock")
	if aerr != nil {
		return false, aerr
	}
	if skip && rq.authID() != "root@pam" {
		return false, paramErr1("skiplock", "Only root may use this option.")
	}
	return skip, nil
}
