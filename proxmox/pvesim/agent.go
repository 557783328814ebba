package pvesim

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// maxAgentRead is the largest file-read answer (PVE caps at 16 MiB).
const maxAgentRead = 16 << 20

// maxExecOutput caps captured guest-exec output per stream.
const maxExecOutput = 1 << 20

// agentCheck fails agent calls the way PVE does when the agent cannot
// answer: not configured, VM not running, or agent not up yet.
func (s *Server) agentCheck(rq *request) (*vm, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	switch {
	case !agentEnabled(v.conf["agent"]):
		return nil, fail("No QEMU guest agent configured")
	case v.status() != "running":
		return nil, fail("VM %d is not running", v.id)
	case v.run == stPaused, time.Since(v.started) < s.cfg.AgentDelay, v.guest == nil:
		return nil, fail("QEMU guest agent is not running")
	}
	return v, nil
}

func result(v any) map[string]any { return map[string]any{"result": v} }

func (s *Server) agentGet(rq *request) (any, *apiError) {
	v, aerr := s.agentCheck(rq)
	if aerr != nil {
		return nil, aerr
	}
	switch rq.vars["cmd"] {
	case "network-get-interfaces":
		return result(s.guestInterfaces(v)), nil
	case "get-osinfo":
		return result(osInfo()), nil
	case "get-host-name":
		return result(map[string]any{"host-name": v.conf["name"]}), nil
	case "info":
		return result(map[string]any{"version": "9.2.0", "supported_commands": agentCommands()}), nil
	case "file-read":
		return s.agentFileRead(rq, v)
	case "exec-status":
		return s.agentExecStatus(rq, v)
	}
	return nil, errf(http.StatusNotImplemented, "Method '%s %s' not implemented", rq.method, rq.path)
}

func (s *Server) agentPost(rq *request) (any, *apiError) {
	v, aerr := s.agentCheck(rq)
	if aerr != nil {
		return nil, aerr
	}
	switch rq.vars["cmd"] {
	case "ping", "fstrim", "fsfreeze-thaw", "fsfreeze-freeze":
		return result(map[string]any{}), nil
	case "fsfreeze-status":
		return result("thawed"), nil
	case "exec":
		return s.agentExec(rq, v)
	case "file-write":
		return s.agentFileWrite(rq, v)
	case "shutdown":
		rq.later(s.powerOff(v))
		return result(map[string]any{}), nil
	}
	return nil, errf(http.StatusNotImplemented, "Method '%s %s' not implemented", rq.method, rq.path)
}

func agentCommands() []map[string]any {
	var out []map[string]any
	for _, c := range []string{"guest-ping", "guest-exec", "guest-exec-status", "guest-file-open",
		"guest-file-read", "guest-file-write", "guest-get-osinfo", "guest-network-get-interfaces"} {
		out = append(out, map[string]any{"name": c, "enabled": true, "success-response": true})
	}
	return out
}

func osInfo() map[string]any {
	return map[string]any{
		"id": "debian", "name": "Debian GNU/Linux", "pretty-name": "Debian GNU/Linux 13 (trixie)",
		"version": "13 (trixie)", "version-id": "13", "machine": "x86_64",
		"kernel-release": "6.12.41+deb13-amd64", "kernel-version": "#1 SMP PREEMPT_DYNAMIC Debian",
	}
}

func (s *Server) guestInterfaces(v *vm) []map[string]any {
	stats := map[string]any{"rx-bytes": 0, "rx-packets": 0, "rx-errs": 0, "rx-dropped": 0,
		"tx-bytes": 0, "tx-packets": 0, "tx-errs": 0, "tx-dropped": 0}
	lo := map[string]any{
		"name": "lo", "hardware-address": "00:00:00:00:00:00", "statistics": stats,
		"ip-addresses": []map[string]any{
			{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
			{"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128},
		},
	}
	mac := "bc:24:11:00:00:00"
	if _, m, _, errs := parseNet("net0", v.conf["net0"]); errs == nil && m != "" {
		mac = strings.ToLower(m)
	}
	eth0 := map[string]any{
		"name": "eth0", "hardware-address": mac, "statistics": stats,
		"ip-addresses": []map[string]any{
			{"ip-address-type": "ipv4", "ip-address": v.guest.ip.String(), "prefix": s.guestPrefix(v)},
			{"ip-address-type": "ipv6", "ip-address": linkLocal(mac), "prefix": 64},
		},
	}
	return []map[string]any{lo, eth0}
}

func (s *Server) guestPrefix(v *vm) int {
	for _, kv := range propList(v.conf["ipconfig0"]) {
		if _, bits, ok := strings.Cut(kv[1], "/"); ok && kv[0] == "ip" {
			return atoiDefault(bits, s.guestNw.Bits())
		}
	}
	return s.guestNw.Bits()
}

// linkLocal derives the EUI-64 IPv6 link-local address of a MAC.
func linkLocal(mac string) string {
	var b [6]byte
	_, err := fmt.Sscanf(mac, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5])
	if err != nil {
		return "fe80::1"
	}
	return fmt.Sprintf("fe80::%02x%02x:%02xff:fe%02x:%02x%02x", b[0]^2, b[1], b[2], b[3], b[4], b[5])
}

// guestPath maps a guest path to the local file system: only the home of
// ciuser (/home/<ciuser>, or /root for root) is backed by files.
func guestPath(v *vm, p string) (string, bool) {
	user := v.conf["ciuser"]
	homes := []string{"/root"}
	if user != "" && user != "root" {
		homes = []string{"/home/" + user}
	}
	clean := filepath.Clean(p)
	for _, h := range homes {
		if clean == h {
			return v.guest.home, true
		}
		if rest, ok := strings.CutPrefix(clean, h+"/"); ok {
			return filepath.Join(v.guest.home, rest), true
		}
	}
	return "", false
}

func (s *Server) agentFileRead(rq *request, v *vm) (any, *apiError) {
	file := rq.str("file")
	if file == "" {
		return nil, paramErr1("file", "property is missing and it is not optional")
	}
	data, aerr := guestFile(v, file)
	if aerr != nil {
		return nil, aerr
	}
	out := map[string]any{"content": string(data), "bytes-read": len(data)}
	if len(data) > maxAgentRead {
		out["content"], out["bytes-read"], out["truncated"] = string(data[:maxAgentRead]), maxAgentRead, 1
	}
	return out, nil
}

// guestFile returns the content of a guest file: generated system files or
// files in the guest's home.
func guestFile(v *vm, file string) ([]byte, *apiError) {
	switch file {
	case "/etc/ssh/ssh_host_ed25519_key.pub":
		line := bytes.TrimSpace(ssh.MarshalAuthorizedKey(v.guest.signer.PublicKey()))
		return append(line, []byte(" root@"+v.conf["name"]+"\n")...), nil
	case "/etc/hostname":
		return []byte(v.conf["name"] + "\n"), nil
	case "/etc/machine-id":
		return []byte(strings.ReplaceAll(uuidOf(v.conf["smbios1"]), "-", "") + "\n"), nil
	}
	local, ok := guestPath(v, file)
	if !ok {
		return nil, openFailed(file, "No such file or directory")
	}
	data, err := os.ReadFile(local)
	if err != nil {
		return nil, openFailed(file, "No such file or directory")
	}
	return data, nil
}

func uuidOf(smbios string) string {
	for _, kv := range propList(smbios) {
		if kv[0] == "uuid" {
			return kv[1]
		}
	}
	return "00000000-0000-0000-0000-000000000000"
}

func openFailed(file, why string) *apiError {
	return fail("Agent error: Failed to open file '%s': %s", file, why)
}

func (s *Server) agentFileWrite(rq *request, v *vm) (any, *apiError) {
	file := rq.str("file")
	data := []byte(rq.str("content"))
	encode := true
	if rq.has("encode") {
		encode, _ = parseBool(rq.str("encode"))
	}
	if encode {
		dec, err := base64.StdEncoding.DecodeString(rq.str("content"))
		if err != nil {
			return nil, fail("Agent error: invalid base64 content")
		}
		data = dec
	}
	local, ok := guestPath(v, file)
	if !ok {
		return nil, openFailed(file, "Permission denied")
	}
	if err := os.WriteFile(local, data, 0o644); err != nil {
		return nil, openFailed(file, "No such file or directory")
	}
	return nil, nil
}

// execState is one guest-exec process.
type execState struct {
	exited   bool
	code     int
	signal   int
	out, err []byte
}

// execTable holds the guest-exec processes of all guests, by VMID and pid.
type execTable struct {
	mu    sync.Mutex
	next  int
	procs map[int]map[int]*execState
}

func (s *Server) agentExec(rq *request, v *vm) (any, *apiError) {
	argv := rq.strList("command")
	if len(argv) == 0 || argv[0] == "" {
		return nil, fail("command or input-data (or both) required")
	}
	if s.closed {
		return nil, fail("Agent error: guest is shutting down")
	}
	input := rq.str("input-data")
	pid, st := s.execs.add(v.id)
	home := v.guest.home
	s.guestWG.Go(func() { runExec(s.ctx, st, &s.execs, argv, input, home) })
	return map[string]any{"pid": pid}, nil
}

func (t *execTable) add(vmid int) (int, *execState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.procs == nil {
		t.procs = map[int]map[int]*execState{}
	}
	if t.procs[vmid] == nil {
		t.procs[vmid] = map[int]*execState{}
	}
	t.next++
	st := &execState{}
	t.procs[vmid][t.next+1000] = st
	return t.next + 1000, st
}

// runExec runs a guest-exec command on the local host in the guest's home.
func runExec(ctx context.Context, st *execState, t *execTable, argv []string, input, home string) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = home
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.Stdin = strings.NewReader(input)
	cmd.WaitDelay = time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	t.mu.Lock()
	defer t.mu.Unlock()
	st.exited = true
	st.out, st.err = capBytes(out.Bytes()), capBytes(errb.Bytes())
	if ee, ok := err.(*exec.ExitError); ok {
		st.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			st.signal = int(ws.Signal())
		}
	} else if err != nil {
		st.code, st.err = 127, []byte(err.Error())
	}
}

func capBytes(b []byte) []byte {
	if len(b) > maxExecOutput {
		return b[:maxExecOutput]
	}
	return b
}

func (s *Server) agentExecStatus(rq *request, v *vm) (any, *apiError) {
	pid, aerr := rq.intParam("pid", 0)
	if aerr != nil {
		return nil, aerr
	}
	s.execs.mu.Lock()
	defer s.execs.mu.Unlock()
	st := s.execs.procs[v.id][pid]
	if st == nil {
		return nil, fail("Agent error: Invalid parameter 'pid'")
	}
	if !st.exited {
		return map[string]any{"exited": 0}, nil
	}
	out := map[string]any{"exited": 1, "exitcode": st.code}
	if st.signal != 0 {
		out["signal"] = st.signal
	}
	if len(st.out) > 0 {
		out["out-data"] = string(st.out)
	}
	if len(st.err) > 0 {
		out["err-data"] = string(st.err)
	}
	return out, nil
}
