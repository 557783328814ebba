package pvesim

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ticketLifetime is how long a PVE ticket is valid.
const ticketLifetime = 2 * time.Hour

// ExpireTickets invalidates every ticket issued so far, as if they had
// outlived their two hours; clients must log in again. API tokens are not
// affected.
func (s *Server) ExpireTickets() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.c.ticketMin = time.Now().Add(time.Second)
}

// authFailed is pveproxy's answer to a bad token or ticket.
// TODO: pveproxy delays every 401 by 3s; add a Config knob when a client's
// retry timing needs it.
func authFailed() *apiError {
	return &apiError{status: http.StatusUnauthorized, msg: "Authentication failed!", noBody: true}
}

func (s *Server) authenticate(rq *request, r *http.Request) *apiError {
	authz := r.Header.Get("Authorization")
	if rest, ok := strings.CutPrefix(authz, "PVEAPIToken="); ok {
		return s.checkToken(rq, rest)
	}
	ticket := ""
	if c, err := r.Cookie("PVEAuthCookie"); err == nil {
		ticket = c.Value
	} else if rest, ok := strings.CutPrefix(authz, "PVEAuthCookie="); ok {
		ticket = rest
	}
	if ticket == "" {
		return &apiError{status: http.StatusUnauthorized, msg: "No ticket", noBody: true}
	}
	user, ok := s.verifyTicket(ticket)
	if !ok {
		return authFailed()
	}
	if r.Method != http.MethodGet && !s.verifyCSRF(r.Header.Get("CSRFPreventionToken"), user) {
		return &apiError{status: http.StatusUnauthorized, msg: "Permission denied - invalid csrf token"}
	}
	rq.user = user
	return nil
}

// checkToken verifies "user@realm!tokenid=secret", split on the last "=".
func (s *Server) checkToken(rq *request, v string) *apiError {
	i := strings.LastIndexByte(v, '=')
	if i < 0 {
		return authFailed()
	}
	id, secret := v[:i], v[i+1:]
	want, ok := s.cfg.Tokens[id]
	user, tok, hasBang := strings.Cut(id, "!")
	if !ok || !hasBang || subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		return authFailed()
	}
	rq.user, rq.tokenID = user, tok
	return nil
}

func (s *Server) newTicket(user string, now time.Time) string {
	plain := fmt.Sprintf("PVE:%s:%08X", user, now.Unix())
	return plain + "::" + base64.StdEncoding.EncodeToString(s.mac(plain))
}

// verifyTicket checks signature and age and returns the ticket's user.
func (s *Server) verifyTicket(t string) (string, bool) {
	plain, sig, ok := strings.Cut(t, "::")
	if !ok {
		return "", false
	}
	want := base64.StdEncoding.EncodeToString(s.mac(plain))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return "", false
	}
	parts := strings.Split(plain, ":")
	if len(parts) != 3 || parts[0] != "PVE" {
		return "", false
	}
	ts, err := strconv.ParseInt(parts[2], 16, 64)
	if err != nil {
		return "", false
	}
	issued := time.Unix(ts, 0)
	s.mu.Lock()
	min := s.c.ticketMin
	s.mu.Unlock()
	if time.Since(issued) > ticketLifetime || issued.Before(min.Truncate(time.Second)) {
		return "", false
	}
	return parts[1], true
}

func (s *Server) newCSRF(user string, now time.Time) string {
	ts := fmt.Sprintf("%08X", now.Unix())
	return ts + ":" + base64.RawStdEncoding.EncodeToString(s.mac("CSRF:"+ts+":"+user))
}

func (s *Server) verifyCSRF(tok, user string) bool {
	ts, _, ok := strings.Cut(tok, ":")
	if !ok {
		return false
	}
	want := ts + ":" + base64.RawStdEncoding.EncodeToString(s.mac("CSRF:"+ts+":"+user))
	return hmac.Equal([]byte(tok), []byte(want))
}

// handleTicket is POST /access/ticket: log in with a password, or renew
// with a still-valid ticket as the password.
func (s *Server) handleTicket(rq *request) (any, *apiError) {
	user, pass := rq.str("username"), rq.str("password")
	if realm := rq.str("realm"); realm != "" && !strings.Contains(user, "@") {
		user += "@" + realm
	}
	if user == "" || !rq.has("password") {
		return nil, paramErr1("username", "property is missing and it is not optional")
	}
	if !s.passwordOK(user, pass) {
		return nil, &apiError{status: http.StatusUnauthorized, msg: "authentication failure"}
	}
	now := time.Now()
	s.mu.Lock()
	if !s.c.ticketMin.IsZero() && now.Before(s.c.ticketMin) {
		now = s.c.ticketMin
	}
	s.mu.Unlock()
	return map[string]any{
		"username":            user,
		"ticket":              s.newTicket(user, now),
		"CSRFPreventionToken": s.newCSRF(user, now),
		"clustername":         "pvesim",
		"cap": map[string]map[string]int{
			"vms": {
				"VM.Audit": 1, "VM.PowerMgmt": 1, "VM.Allocate": 1, "VM.Clone": 1,
				"VM.Config.Options": 1,
			},
			"nodes":  {"Sys.Audit": 1},
			"access": {"User.Modify": 1},
		},
	}, nil
}

func (s *Server) passwordOK(user, pass string) bool {
	want, ok := s.cfg.Users[user]
	if ok && subtle.ConstantTimeCompare([]byte(want), []byte(pass)) == 1 {
		return true
	}
	if strings.HasPrefix(pass, "PVE:") {
		u, ok := s.verifyTicket(pass)
		return ok && u == user
	}
	return false
}
