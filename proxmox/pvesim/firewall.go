package pvesim

import (
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var (
	fwNameRE    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9\-_]+$`)
	fwIfaceRE   = regexp.MustCompile(`^net\d+$`)
	fwPolicies  = []string{"ACCEPT", "REJECT", "DROP"}
	fwLogLevels = []string{
		"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "nolog",
	}
)

// vmFWOptionTypes are the VM firewall options and their types.
var vmFWOptionTypes = map[string]keyType{
	"enable": tBool, "dhcp": tBool, "ipfilter": tBool, "macfilter": tBool, "ndp": tBool,
	"radv": tBool, "policy_in": tString, "policy_out": tString, "log_level_in": tString,
	"log_level_out": tString,
}

// clusterFWOptionTypes are the datacenter firewall options and their types.
var clusterFWOptionTypes = map[string]keyType{
	"enable": tInt, "ebtables": tBool, "policy_in": tString, "policy_out": tString,
	"policy_forward": tString, "log_ratelimit": tString,
}

func optionsJSON(opts map[string]string, types map[string]keyType) map[string]any {
	out := map[string]any{}
	for k, v := range opts {
		if t := types[k]; t == tBool || t == tInt {
			n, _ := strconv.Atoi(v)
			out[k] = n
			continue
		}
		out[k] = v
	}
	out["digest"] = confDigest(opts)
	return out
}

// updateOptions validates and applies a firewall options PUT.
func updateOptions(rq *request, opts map[string]string, types map[string]keyType) *apiError {
	if d := rq.str("digest"); d != "" && d != confDigest(opts) {
		return fail(
			"detected modified configuration - file changed by other user? Try again.")
	}
	set, errs := map[string]string{}, map[string]string{}
	for k := range rq.params {
		if k == "delete" || k == "digest" || k == "node" || k == "vmid" {
			continue
		}
		v, msg := fwOptionValue(k, rq.str(k), types)
		if msg != "" {
			errs[k] = msg
			continue
		}
		set[k] = v
	}
	if len(errs) > 0 {
		return paramErr(errs)
	}
	for _, k := range deleteSplitRE.Split(strings.TrimSpace(rq.str("delete")), -1) {
		if _, ok := types[k]; k != "" && !ok {
			return fail("no such option '%s'", k)
		}
		delete(opts, k)
	}
	maps.Copy(opts, set)
	return nil
}

func fwOptionValue(k, v string, types map[string]keyType) (string, string) {
	t, ok := types[k]
	if !ok {
		return "", errNotInSchema
	}
	if msg := checkType(t, v); msg != "" {
		return "", msg
	}
	switch {
	case t == tBool:
		b, _ := parseBool(v)
		return boolStr(b), ""
	case strings.HasPrefix(k, "policy_") && !slices.Contains(fwPolicies, v):
		return "", notInEnum(v, "ACCEPT, REJECT, DROP")
	case strings.HasPrefix(k, "log_level") && !slices.Contains(fwLogLevels, v):
		return "", notInEnum(v, strings.Join(fwLogLevels, ", "))
	}
	return v, ""
}

func (s *Server) getVMFWOptions(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	return optionsJSON(v.fw.options, vmFWOptionTypes), nil
}

func (s *Server) putVMFWOptions(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	return nil, updateOptions(rq, v.fw.options, vmFWOptionTypes)
}

func (s *Server) getClusterFWOptions(rq *request) (any, *apiError) {
	return optionsJSON(s.c.fwOptions, clusterFWOptionTypes), nil
}

func (s *Server) putClusterFWOptions(rq *request) (any, *apiError) {
	if rq.has("enable") {
		if n, err := strconv.Atoi(rq.str("enable")); err != nil || n < 0 || n > 1 {
			if b, ok := parseBool(rq.str("enable")); ok {
				rq.params["enable"] = boolStr(b)
			}
		}
	}
	return nil, updateOptions(rq, s.c.fwOptions, clusterFWOptionTypes)
}

// ruleFields maps request keys to rule fields.
func ruleFields(r *fwRule) map[string]*string {
	return map[string]*string{
		"type": &r.Type, "action": &r.Action, "iface": &r.Iface, "source": &r.Source,
		"dest": &r.Dest, "proto": &r.Proto, "dport": &r.Dport, "sport": &r.Sport,
		"macro": &r.Macro, "comment": &r.Comment, "log": &r.Log, "icmp-type": &r.ICMPType,
	}
}

// ruleParams are rule-request parameters that are not rule fields.
var ruleParams = []string{"node", "vmid", "group", "pos", "digest", "moveto", "delete", "enable"}

// fillRule copies request parameters into r; unknown keys are errors.
func fillRule(rq *request, r *fwRule) *apiError {
	fields := ruleFields(r)
	errs := map[string]string{}
	for k := range rq.params {
		if p, ok := fields[k]; ok {
			*p = rq.str(k)
		} else if !slices.Contains(ruleParams, k) {
			errs[k] = errNotInSchema
		}
	}
	if rq.has("enable") {
		b, ok := parseBool(rq.str("enable"))
		if !ok {
			errs["enable"] = fmt.Sprintf("type check ('boolean') failed - got '%s'", rq.str("enable"))
		}
		r.Enable = boolInt(b)
	}
	for _, k := range deleteSplitRE.Split(strings.TrimSpace(rq.str("delete")), -1) {
		if p, ok := fields[k]; ok {
			*p = ""
		}
	}
	if len(errs) > 0 {
		return paramErr(errs)
	}
	return nil
}

// verifyRule checks a rule like pve-firewall's verify_rule; groupRule is
// true for rules inside a security group.
func (s *Server) verifyRule(r *fwRule, groupRule bool) *apiError {
	errs := map[string]string{}
	switch {
	case r.Type == "group" && !groupRule:
		if _, ok := s.c.groups[r.Action]; !ok {
			errs["action"] = fmt.Sprintf("no such security group '%s'", r.Action)
		}
	case r.Type == "in" || r.Type == "out":
		if r.Macro == "" && !slices.Contains(fwPolicies, r.Action) {
			errs["action"] = fmt.Sprintf("unknown action '%s'", r.Action)
		}
	default:
		errs["type"] = notInEnum(r.Type, "in, out, group")
	}
	if r.Iface != "" && !fwIfaceRE.MatchString(r.Iface) {
		errs["iface"] = "value does not match the regex pattern"
	}
	if (r.Dport != "" || r.Sport != "") && r.Proto == "" && r.Macro == "" {
		errs["proto"] = "missing property - 'dport' requires this property"
	}
	for _, k := range []string{"source", "dest"} {
		if v := *ruleFields(r)[k]; v != "" && !validAddrSpec(v) {
			errs[k] = fmt.Sprintf("invalid IP address or alias '%s'", v)
		}
	}
	if r.Log != "" && !slices.Contains(fwLogLevels, r.Log) {
		errs["log"] = notInEnum(r.Log, strings.Join(fwLogLevels, ", "))
	}
	if len(errs) > 0 {
		return paramErr(errs)
	}
	return nil
}

// validAddrSpec accepts IPs, CIDRs, ranges, lists, aliases and +ipsets.
func validAddrSpec(v string) bool {
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimPrefix(part, "+")
		if fwNameRE.MatchString(strings.TrimPrefix(part, "dc/")) || strings.HasPrefix(part, "guest/") {
			continue
		}
		lo, _, _ := strings.Cut(part, "-")
		if _, err := netip.ParsePrefix(lo); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(lo); err != nil {
			return false
		}
	}
	return true
}

func rulesJSON(rules []*fwRule, digest string) []map[string]any {
	out := make([]map[string]any, 0, len(rules))
	for i, r := range rules {
		out = append(out, ruleJSON(r, i, digest))
	}
	return out
}

func ruleJSON(r *fwRule, pos int, digest string) map[string]any {
	m := map[string]any{
		"pos": pos, "type": r.Type, "action": r.Action, "enable": r.Enable, "digest": digest,
	}
	for k, p := range ruleFields(r) {
		if *p != "" && k != "type" && k != "action" {
			m[k] = *p
		}
	}
	return m
}

func rulesDigest(rules []*fwRule) string {
	conf := map[string]string{}
	for i, r := range rules {
		conf[strconv.Itoa(i)] = fmt.Sprintf("%+v", *r)
	}
	return confDigest(conf)
}

// insertRule inserts a new rule at pos (default 0, PVE's top).
func insertRule(rq *request, rules []*fwRule, r *fwRule) ([]*fwRule, *apiError) {
	pos, aerr := rq.intParam("pos", 0)
	if aerr != nil {
		return nil, aerr
	}
	pos = min(max(pos, 0), len(rules))
	return slices.Insert(rules, pos, r), nil
}

func rulePos(rq *request, rules []*fwRule) (int, *apiError) {
	pos, err := strconv.Atoi(rq.vars["pos"])
	if err != nil || pos < 0 || pos >= len(rules) {
		return 0, errf(http.StatusBadRequest, "no rule at position %s", rq.vars["pos"])
	}
	return pos, nil
}

// updateRule applies a rule PUT (fields, delete, moveto) to rules.
func (s *Server) updateRule(rq *request, rules []*fwRule, groupRule bool) ([]*fwRule, *apiError) {
	pos, aerr := rulePos(rq, rules)
	if aerr != nil {
		return nil, aerr
	}
	r := *rules[pos]
	if aerr := fillRule(rq, &r); aerr != nil {
		return nil, aerr
	}
	if aerr := s.verifyRule(&r, groupRule); aerr != nil {
		return nil, aerr
	}
	*rules[pos] = r
	if !rq.has("moveto") {
		return rules, nil
	}
	to, aerr := rq.intParam("moveto", pos)
	if aerr != nil {
		return nil, aerr
	}
	moved := rules[pos]
	rules = slices.Delete(rules, pos, pos+1)
	to = min(max(to, 0), len(rules))
	return slices.Insert(rules, to, moved), nil
}

func (s *Server) newRule(rq *request, rules []*fwRule, groupRule bool) ([]*fwRule, *apiError) {
	r := &fwRule{}
	if aerr := fillRule(rq, r); aerr != nil {
		return nil, aerr
	}
	if aerr := s.verifyRule(r, groupRule); aerr != nil {
		return nil, aerr
	}
	return insertRule(rq, rules, r)
}

func (s *Server) getVMRules(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	return rulesJSON(v.fw.rules, rulesDigest(v.fw.rules)), nil
}

func (s *Server) postVMRule(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	rules, aerr := s.newRule(rq, v.fw.rules, false)
	if aerr != nil {
		return nil, aerr
	}
	v.fw.rules = rules
	return nil, nil
}

func (s *Server) getVMRule(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	pos, aerr := rulePos(rq, v.fw.rules)
	if aerr != nil {
		return nil, aerr
	}
	return ruleJSON(v.fw.rules[pos], pos, rulesDigest(v.fw.rules)), nil
}

func (s *Server) putVMRule(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	rules, aerr := s.updateRule(rq, v.fw.rules, false)
	if aerr != nil {
		return nil, aerr
	}
	v.fw.rules = rules
	return nil, nil
}

func (s *Server) deleteVMRule(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	pos, aerr := rulePos(rq, v.fw.rules)
	if aerr != nil {
		return nil, aerr
	}
	v.fw.rules = slices.Delete(v.fw.rules, pos, pos+1)
	return nil, nil
}

func (s *Server) getGroups(rq *request) (any, *apiError) {
	out := []map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(s.c.groups)) {
		g := s.c.groups[name]
		m := map[string]any{"group": name, "digest": rulesDigest(g.rules)}
		if g.comment != "" {
			m["comment"] = g.comment
		}
		out = append(out, m)
	}
	return out, nil
}

func (s *Server) postGroup(rq *request) (any, *apiError) {
	name := rq.str("group")
	if len(name) > 18 || !fwNameRE.MatchString(name) {
		return nil, paramErr1("group", "invalid format - invalid security group name '"+name+"'")
	}
	if old := rq.str("rename"); old != "" {
		return nil, s.renameGroup(old, name, rq)
	}
	if _, ok := s.c.groups[name]; ok {
		return nil, fail("Security group '%s' already exists", name)
	}
	s.c.groups[name] = &secGroup{comment: rq.str("comment")}
	return nil, nil
}

func (s *Server) renameGroup(old, name string, rq *request) *apiError {
	g, ok := s.c.groups[old]
	if !ok {
		return fail("Security group '%s' does not exist", old)
	}
	if _, taken := s.c.groups[name]; taken && name != old {
		return fail("Security group '%s' already exists", name)
	}
	if rq.has("comment") {
		g.comment = rq.str("comment")
	}
	delete(s.c.groups, old)
	s.c.groups[name] = g
	return nil
}

func (s *Server) groupAt(rq *request) (*secGroup, *apiError) {
	g, ok := s.c.groups[rq.vars["group"]]
	if !ok {
		return nil, fail("no such security group '%s'", rq.vars["group"])
	}
	return g, nil
}

func (s *Server) getGroupRules(rq *request) (any, *apiError) {
	g, aerr := s.groupAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	return rulesJSON(g.rules, rulesDigest(g.rules)), nil
}

func (s *Server) postGroupRule(rq *request) (any, *apiError) {
	g, aerr := s.groupAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	rules, aerr := s.newRule(rq, g.rules, true)
	if aerr != nil {
		return nil, aerr
	}
	g.rules = rules
	return nil, nil
}

func (s *Server) deleteGroup(rq *request) (any, *apiError) {
	g, aerr := s.groupAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	if len(g.rules) > 0 {
		return nil, fail("Security group '%s' is not empty", rq.vars["group"])
	}
	delete(s.c.groups, rq.vars["group"])
	return nil, nil
}

func (s *Server) getGroupRule(rq *request) (any, *apiError) {
	g, aerr := s.groupAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	pos, aerr := rulePos(rq, g.rules)
	if aerr != nil {
		return nil, aerr
	}
	return ruleJSON(g.rules[pos], pos, rulesDigest(g.rules)), nil
}

func (s *Server) putGroupRule(rq *request) (any, *apiError) {
	g, aerr := s.groupAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	rules, aerr := s.updateRule(rq, g.rules, true)
	if aerr != nil {
		return nil, aerr
	}
	g.rules = rules
	return nil, nil
}

func (s *Server) deleteGroupRule(rq *request) (any, *apiError) {
	g, aerr := s.groupAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	pos, aerr := rulePos(rq, g.rules)
	if aerr != nil {
		return nil, aerr
	}
	g.rules = slices.Delete(g.rules, pos, pos+1)
	return nil, nil
}

func (s *Server) getIPSets(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	out := []map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(v.fw.ipsets)) {
		set := v.fw.ipsets[name]
		m := map[string]any{"name": name, "digest": ipsetDigest(set)}
		if set.comment != "" {
			m["comment"] = set.comment
		}
		out = append(out, m)
	}
	return out, nil
}

func ipsetDigest(set *ipset) string {
	conf := map[string]string{"comment": set.comment}
	for _, e := range set.entries {
		conf[e.cidr] = fmt.Sprintf("%s|%t", e.comment, e.nomatch)
	}
	return confDigest(conf)
}

func (s *Server) postIPSet(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	name := rq.str("name")
	if !fwNameRE.MatchString(name) {
		return nil, paramErr1("name", fmt.Sprintf("invalid format - invalid ipset name '%s'", name))
	}
	if old := rq.str("rename"); old != "" {
		set, ok := v.fw.ipsets[old]
		if !ok {
			return nil, fail("no such IPSet '%s'", old)
		}
		delete(v.fw.ipsets, old)
		v.fw.ipsets[name] = set
		return nil, nil
	}
	if _, ok := v.fw.ipsets[name]; ok {
		return nil, fail("IPSet '%s' already exists", name)
	}
	v.fw.ipsets[name] = &ipset{comment: rq.str("comment")}
	return nil, nil
}

func (s *Server) ipsetAt(rq *request) (*vm, *ipset, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, nil, aerr
	}
	set, ok := v.fw.ipsets[rq.vars["name"]]
	if !ok {
		return nil, nil, fail("no such IPSet '%s'", rq.vars["name"])
	}
	return v, set, nil
}

func (s *Server) getIPSetEntries(rq *request) (any, *apiError) {
	_, set, aerr := s.ipsetAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	digest := ipsetDigest(set)
	out := []map[string]any{}
	for _, e := range set.entries {
		out = append(out, entryJSON(e, digest))
	}
	return out, nil
}

func entryJSON(e *ipsetEntry, digest string) map[string]any {
	m := map[string]any{"cidr": e.cidr, "digest": digest}
	if e.comment != "" {
		m["comment"] = e.comment
	}
	if e.nomatch {
		m["nomatch"] = true
	}
	return m
}

func (s *Server) postIPSetEntry(rq *request) (any, *apiError) {
	_, set, aerr := s.ipsetAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	cidr := rq.str("cidr")
	if !validAddrSpec(cidr) || strings.Contains(cidr, ",") {
		return nil, paramErr1("cidr", fmt.Sprintf("invalid IP address or alias '%s'", cidr))
	}
	for _, e := range set.entries {
		if e.cidr == cidr {
			return nil, fail("address '%s' already exists", cidr)
		}
	}
	nomatch, aerr := rq.boolParam("nomatch")
	if aerr != nil {
		return nil, aerr
	}
	e := &ipsetEntry{cidr: cidr, comment: rq.str("comment"), nomatch: nomatch}
	set.entries = append(set.entries, e)
	return nil, nil
}

func (s *Server) deleteIPSet(rq *request) (any, *apiError) {
	v, set, aerr := s.ipsetAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	force, aerr := rq.boolParam("force")
	if aerr != nil {
		return nil, aerr
	}
	if len(set.entries) > 0 && !force {
		return nil, fail("IPSet '%s' is not empty", rq.vars["name"])
	}
	delete(v.fw.ipsets, rq.vars["name"])
	return nil, nil
}

func (s *Server) entryAt(rq *request) (*ipset, int, *apiError) {
	_, set, aerr := s.ipsetAt(rq)
	if aerr != nil {
		return nil, 0, aerr
	}
	for i, e := range set.entries {
		if e.cidr == rq.vars["cidr"] {
			return set, i, nil
		}
	}
	return nil, 0, fail("no such IP/Network")
}

func (s *Server) getIPSetEntry(rq *request) (any, *apiError) {
	set, i, aerr := s.entryAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	return entryJSON(set.entries[i], ipsetDigest(set)), nil
}

func (s *Server) deleteIPSetEntry(rq *request) (any, *apiError) {
	set, i, aerr := s.entryAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	set.entries = slices.Delete(set.entries, i, i+1)
	return nil, nil
}
