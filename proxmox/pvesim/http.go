package pvesim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const apiPrefix = "/api2/json"

// maxBody is pveproxy's POST body limit.
const maxBody = 512 << 10

// apiError is an error answered to the client in PVE's envelope.
type apiError struct {
	status int
	msg    string
	errors map[string]string
	noBody bool // 401s from pveproxy carry no JSON body
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

// errf builds an apiError; PVE's generic failures are 500s.
func errf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// fail is PVE's generic error: a die() in the API handler becomes a 500.
func fail(format string, args ...any) *apiError {
	return errf(http.StatusInternalServerError, format, args...)
}

// paramErr is PVE's 400 "Parameter verification failed." with per-key texts.
func paramErr(errs map[string]string) *apiError {
	return &apiError{
		status: http.StatusBadRequest, msg: "Parameter verification failed.", errors: errs,
	}
}

func paramErr1(key, msg string) *apiError { return paramErr(map[string]string{key: msg}) }

// request is one parsed API call.
type request struct {
	ctx     context.Context
	method  string
	path    string // without /api2/json
	params  map[string]any
	vars    map[string]string
	vmid    int   // VMID addressed by the path, 0 if none
	vmids   []int // VMIDs faults match: the path's and a clone's newid
	user    string
	tokenID string
	hasBody bool
	after   *[]func() // work to run after Server.mu is released
}

// authID is the user as it appears in UPIDs ("root@pam!tok" for tokens).
func (rq *request) authID() string {
	if rq.tokenID != "" {
		return rq.user + "!" + rq.tokenID
	}
	return rq.user
}

func (rq *request) has(k string) bool {
	_, ok := rq.params[k]
	return ok
}

// str returns a parameter as a string ("" when absent).
func (rq *request) str(k string) string {
	v, ok := rq.params[k]
	if !ok || v == nil {
		return ""
	}
	return paramString(v)
}

func paramString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return boolStr(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = paramString(e)
		}
		return strings.Join(parts, "\x00")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// boolParam parses an optional boolean parameter (true/false, 1/0, "1"/"0").
func (rq *request) boolParam(k string) (bool, *apiError) {
	if !rq.has(k) {
		return false, nil
	}
	b, ok := parseBool(rq.str(k))
	if !ok {
		return false, paramErr1(k, fmt.Sprintf("type check ('boolean') failed - got '%s'", rq.str(k)))
	}
	return b, nil
}

// intParam parses an optional integer parameter; def when absent.
func (rq *request) intParam(k string, def int) (int, *apiError) {
	if !rq.has(k) || rq.str(k) == "" {
		return def, nil
	}
	n, err := strconv.Atoi(rq.str(k))
	if err != nil {
		return 0, paramErr1(k, fmt.Sprintf("type check ('integer') failed - got '%s'", rq.str(k)))
	}
	return n, nil
}

// strList returns a parameter that may be an array or a \0-joined string.
func (rq *request) strList(k string) []string {
	v, ok := rq.params[k]
	if !ok {
		return nil
	}
	if arr, ok := v.([]any); ok {
		out := make([]string, len(arr))
		for i, e := range arr {
			out[i] = paramString(e)
		}
		return out
	}
	return strings.Split(paramString(v), "\x00")
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		dropConn(w)
		return
	}
	defer s.reqWG.Done()
	rq, aerr := s.parseRequest(r)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	start := time.Now()
	if f, ok := s.requestFault(rq); ok {
		if done := s.applyRequestFault(w, r, rq, f); done {
			return
		}
	}
	data, aerr := s.dispatch(rq, r)
	s.log.Debug("api request", "method", rq.method, "path", rq.path, "user", rq.authID(),
		"status", errStatus(aerr), "duration", time.Since(start))
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	s.writeData(w, data)
}

func errStatus(e *apiError) int {
	if e == nil {
		return http.StatusOK
	}
	return e.status
}

// applyRequestFault plays a fired request fault; it reports whether the
// request is finished.
func (s *Server) applyRequestFault(
	w http.ResponseWriter, r *http.Request, rq *request, f Fault,
) bool {
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		case <-s.ctx.Done():
			t.Stop()
			return true
		}
	}
	switch {
	case f.DropConn:
		dropConn(w)
		return true
	case f.Status != 0:
		s.writeError(w, &apiError{status: f.Status, msg: faultMessage(f)})
		return true
	case f.DropResponse:
		_, _ = s.dispatch(rq, r)
		dropConn(w)
		return true
	}
	return false
}

func dropConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// dispatch authenticates and routes a request.
func (s *Server) dispatch(rq *request, r *http.Request) (any, *apiError) {
	if rq.path == "/access/ticket" && rq.method == http.MethodPost {
		return s.handleTicket(rq)
	}
	if aerr := s.authenticate(rq, r); aerr != nil {
		return nil, aerr
	}
	return s.route(rq)
}

func (s *Server) parseRequest(r *http.Request) (*request, *apiError) {
	rq := &request{ctx: r.Context(), method: r.Method, params: map[string]any{}}
	p := r.URL.Path
	if !strings.HasPrefix(p, apiPrefix+"/") && p != apiPrefix {
		return nil, errf(http.StatusNotImplemented, "Method '%s %s' not implemented", r.Method, p)
	}
	rq.path = strings.TrimPrefix(p, apiPrefix)
	if rq.path == "" {
		rq.path = "/"
	}
	if aerr := rq.readBody(r); aerr != nil {
		return nil, aerr
	}
	for k, vs := range r.URL.Query() {
		if len(vs) > 0 {
			rq.params[k] = vs[len(vs)-1]
		}
	}
	rq.vmid = pathVMID(rq.path)
	rq.vmids = []int{rq.vmid}
	if n, err := strconv.Atoi(rq.str("newid")); err == nil {
		rq.vmids = append(rq.vmids, n)
	}
	return rq, nil
}

// readBody merges a JSON or form body into params (POST and PUT only).
func (rq *request) readBody(r *http.Request) *apiError {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return errf(http.StatusBadRequest, "read request body: %v", err)
	}
	if len(body) > maxBody {
		return errf(http.StatusRequestEntityTooLarge, "request too large")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	rq.hasBody = true
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&rq.params); err != nil {
			return errf(http.StatusBadRequest, "unable to parse JSON body: %v", err)
		}
		return nil
	}
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return errf(http.StatusBadRequest, "unable to parse form body: %v", err)
	}
	for k, vs := range vals {
		rq.params[k] = strings.Join(vs, "\x00")
	}
	return nil
}

// pathVMID extracts N from ".../qemu/N..." for fault matching.
func pathVMID(p string) int {
	segs := strings.Split(p, "/")
	for i := 0; i+1 < len(segs); i++ {
		if segs[i] == "qemu" {
			n, _ := strconv.Atoi(segs[i+1])
			return n
		}
	}
	return 0
}

func (s *Server) writeData(w http.ResponseWriter, data any) {
	body, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		s.writeError(w, fail("encode response: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// writeError answers with PVE's envelope and, by hijacking the connection,
// PVE's reason phrase: the first line of the message.
func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	var body []byte
	if !e.noBody {
		env := map[string]any{"data": nil, "message": e.msg + "\n"}
		if len(e.errors) > 0 {
			errs := make(map[string]string, len(e.errors))
			for k, v := range e.errors {
				errs[k] = v + "\n"
			}
			env["errors"] = errs
		}
		body, _ = json.Marshal(env)
	}
	reason, _, _ := strings.Cut(e.msg, "\n")
	if hj, ok := w.(http.Hijacker); ok && reason != "" {
		if conn, bw, err := hj.Hijack(); err == nil {
			writeRaw(bw, e.status, reason, body)
			_ = conn.Close()
			return
		}
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}

func writeRaw(bw *bufio.ReadWriter, status int, reason string, body []byte) {
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", status, reason)
	fmt.Fprintf(bw, "Date: %s\r\n", time.Now().UTC().Format(http.TimeFormat))
	fmt.Fprintf(bw, "Server: pve-api-daemon/3.0\r\n")
	fmt.Fprintf(bw, "Cache-Control: max-age=0\r\nPragma: no-cache\r\nExpires: %s\r\n",
		time.Now().UTC().Format(http.TimeFormat))
	if len(body) > 0 {
		fmt.Fprintf(bw, "Content-Type: application/json;charset=UTF-8\r\n")
	}
	fmt.Fprintf(bw, "Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	_, _ = bw.Write(body)
	_ = bw.Flush()
}
