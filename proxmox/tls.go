package proxmox

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// idleConnTimeout stays below pveproxy's 5 s keep-alive timeout, so that a
// pooled connection is not reused just as the server closes it.
const idleConnTimeout = 4 * time.Second

// parseFingerprint decodes a SHA-256 fingerprint written as hex, with or
// without colons, in either case.
func parseFingerprint(s string) ([]byte, error) {
	clean := strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(s))
	b, err := hex.DecodeString(clean)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q is not a SHA-256 fingerprint", s)
	}
	return b, nil
}

// formatFingerprint renders a digest the way PVE shows it: upper-case hex
// bytes joined by colons.
func formatFingerprint(sum []byte) string {
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// pinError reports a server certificate that does not match the pin.
type pinError struct{ got, want string }

func (e *pinError) Error() string {
	return fmt.Sprintf("proxmox tls: server certificate fingerprint %s does not match "+
		"the pinned %s", e.got, e.want)
}

// pinVerifier returns a VerifyConnection callback that accepts only a leaf
// certificate whose SHA-256 digest is want.
func pinVerifier(want []byte) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("proxmox tls: server sent no certificate")
		}
		sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
		if !bytes.Equal(sum[:], want) {
			return &pinError{got: formatFingerprint(sum[:]), want: formatFingerprint(want)}
		}
		return nil
	}
}

// httpClient builds the HTTP client the go-proxmox client uses, applying the
// TLS trust settings of cfg.
func httpClient(cfg Config) (*http.Client, error) {
	base := cfg.HTTPClient
	if base == nil {
		base = &http.Client{}
	}
	out := *base
	if out.Timeout == 0 {
		out.Timeout = cfg.RequestTimeout
	}
	tlsSet := cfg.CAFile != "" || cfg.Fingerprint != "" || cfg.InsecureSkipVerify
	var tr *http.Transport
	switch t := base.Transport.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
		tr.IdleConnTimeout = idleConnTimeout
	case *http.Transport:
		tr = t.Clone()
	default:
		if tlsSet {
			return nil, errors.New("HTTPClient has a custom RoundTripper: " +
				"CAFile, Fingerprint and InsecureSkipVerify cannot be applied")
		}
		return &out, nil
	}
	tc, err := tlsConfig(cfg, tr.TLSClientConfig)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = tc
	out.Transport = tr
	return &out, nil
}

// tlsConfig derives the client TLS configuration from cfg, starting from
// base (which may be nil).
func tlsConfig(cfg Config, base *tls.Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		tc = base.Clone()
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read CA file %s: no PEM certificate found", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.Fingerprint != "" {
		want, err := parseFingerprint(cfg.Fingerprint)
		if err != nil {
			return nil, err
		}
		tc.VerifyConnection = pinVerifier(want)
		// With a CA the chain is verified as well; without one the pin,
		// checked in VerifyConnection, is the whole of the trust.
		tc.InsecureSkipVerify = cfg.CAFile == ""
		return tc, nil
	}
	if cfg.InsecureSkipVerify {
		tc.InsecureSkipVerify = true
	}
	return tc, nil
}
