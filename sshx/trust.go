package sshx

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
)

// HostKeyMismatchError reports a guest host key that differs from the
// pinned one. It matches agentlab.ErrHostKeyMismatch with errors.Is.
type HostKeyMismatchError struct {
	// Addr is the address that was dialled.
	Addr string
	// Want and Got are the SHA256 fingerprints of the pinned and the
	// offered key.
	Want, Got string
}

// Error names the address and both fingerprints.
func (e *HostKeyMismatchError) Error() string {
	return fmt.Sprintf("%v: %s offered %s, pinned %s",
		agentlab.ErrHostKeyMismatch, e.Addr, e.Got, e.Want)
}

// Unwrap returns agentlab.ErrHostKeyMismatch.
func (e *HostKeyMismatchError) Unwrap() error { return agentlab.ErrHostKeyMismatch }

// FormatKey renders a public key in authorized_keys format without the
// trailing newline, the form [agentlab.Endpoint.HostKey] holds.
func FormatKey(pk ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
}

// parseKey parses one key in authorized_keys format.
func parseKey(s string) (ssh.PublicKey, error) {
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("parse pinned host key: %w: %w", agentlab.ErrInvalidArgument, err)
	}
	return pk, nil
}

// pinnedCallback accepts only pk.
func pinnedCallback(pk ssh.PublicKey) ssh.HostKeyCallback {
	want := pk.Marshal()
	return func(host string, remote net.Addr, got ssh.PublicKey) error {
		if bytes.Equal(got.Marshal(), want) {
			return nil
		}
		return &HostKeyMismatchError{
			Addr: host,
			Want: ssh.FingerprintSHA256(pk),
			Got:  ssh.FingerprintSHA256(got),
		}
	}
}

// algorithmsFor restricts host key negotiation to pk's type, so that a
// server with several host keys presents the pinned one.
func algorithmsFor(pk ssh.PublicKey) []string {
	if pk.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{pk.Type()}
}

// hostKeyCheck is the trust decision for one dial. learned is set by the
// callback when a key was accepted on first use.
type hostKeyCheck struct {
	callback   ssh.HostKeyCallback
	algorithms []string
	learned    string
}

// hostKeyCheck builds the host key callback for ep with pin ("" = none).
func (t *Transport) hostKeyCheck(ep agentlab.Endpoint, pin string) (*hostKeyCheck, error) {
	hk := &hostKeyCheck{}
	if pin != "" {
		pk, err := parseKey(pin)
		if err != nil {
			return nil, err
		}
		hk.callback, hk.algorithms = pinnedCallback(pk), algorithmsFor(pk)
		return hk, nil
	}
	hk.callback = hk.firstUse(ep)
	return hk, nil
}

// firstUse is the callback when no key is pinned: refuse, or accept, learn
// and record the key when ep allows trust on first use.
func (hk *hostKeyCheck) firstUse(ep agentlab.Endpoint) ssh.HostKeyCallback {
	return func(host string, _ net.Addr, got ssh.PublicKey) error {
		if !ep.TrustOnFirstUse {
			return fmt.Errorf("%w: %s offered %s", ErrHostKeyNotPinned, host,
				ssh.FingerprintSHA256(got))
		}
		key := FormatKey(got)
		if ep.LearnHostKey != nil {
			if err := ep.LearnHostKey(key); err != nil {
				return fmt.Errorf("learn host key: %w", err)
			}
		}
		hk.learned = key
		return nil
	}
}

// LoadOrCreateKey reads the OpenSSH private key at path, or, when the file
// does not exist, generates an ed25519 key, writes it there with mode 0600
// (creating parent directories 0700) and writes the public key to
// path+".pub". As OpenSSH does, an existing key that group or others may
// read or write is refused with an error matching
// [agentlab.ErrInvalidArgument]. Encrypted keys are not supported. Not safe
// for two processes creating the same file at once: the loser gets an error
// and can retry.
func LoadOrCreateKey(path string) (ssh.Signer, error) {
	b, err := readKey(path)
	if err == nil {
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("parse key %s: %w", path, err)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return createKey(path)
}

// readKey reads an existing private key file that only its owner may use.
func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: key %s has mode %v and others may read it; "+
			"chmod 600 it", agentlab.ErrInvalidArgument, path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return b, nil
}

func createKey(path string) (ssh.Signer, error) {
	signer, pemBytes, err := generateKey()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key dir: %w", err)
	}
	if err := writeNew(path, pemBytes); err != nil {
		return nil, err
	}
	pub := ssh.MarshalAuthorizedKey(signer.PublicKey())
	if err := os.WriteFile(path+".pub", pub, 0o644); err != nil {
		return nil, fmt.Errorf("write public key: %w", err)
	}
	return signer, nil
}

// generateKey makes an ed25519 key and its OpenSSH PEM encoding.
func generateKey() (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "agentlab")
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("wrap key: %w", err)
	}
	return signer, pem.EncodeToMemory(block), nil
}

// writeNew creates path with mode 0600, failing if it exists.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write key: %w", err)
	}
	return nil
}
