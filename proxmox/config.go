package proxmox

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// Defaults applied by [New] to zero Config fields.
const (
	DefaultCloneConcurrency = 2
	DefaultPollInterval     = time.Second
	DefaultRequestTimeout   = 30 * time.Second
	DefaultRetryMin         = 250 * time.Millisecond
	DefaultRetryMax         = 5 * time.Second
	DefaultRetryTimeout     = 2 * time.Minute
	DefaultCacheTTL         = time.Minute
)

// redacted replaces secrets wherever a Config is printed or logged.
const redacted = "[redacted]"

// Config configures a [Hypervisor]. URL, TokenID and TokenSecret are
// required; every other zero value has a documented default. A Config is a
// plain value: New copies it, and changing it afterwards has no effect.
//
// Printing a Config with any fmt verb, or logging it with slog, never shows
// TokenSecret.
type Config struct {
	// URL is the API endpoint: "https://pve1:8006", "https://pve1:8006/" and
	// "https://pve1:8006/api2/json" are equivalent; a URL without a scheme
	// gets "https://". Plain http is refused.
	URL string

	// TokenID is the API token ID, "user@realm!tokenname".
	TokenID string
	// TokenSecret is the API token's secret (a UUID). It is sent only in the
	// Authorization header and never appears in logs, errors or fmt output.
	TokenSecret string

	// CAFile is a PEM file with the certificate authority that signed the
	// server certificate, usually a copy of /etc/pve/pve-root-ca.pem. The
	// server name is verified against it.
	CAFile string
	// Fingerprint pins the SHA-256 fingerprint of the server's leaf
	// certificate, as the PVE GUI shows it ("AB:CD:..."; colons and case are
	// ignored). With Fingerprint alone the chain and name are not checked:
	// the pin is the trust. With CAFile as well, both must pass.
	Fingerprint string
	// InsecureSkipVerify turns TLS verification off entirely. It is used
	// only when set explicitly and without Fingerprint, and New logs a
	// warning. Never use it outside a lab.
	InsecureSkipVerify bool

	// Nodes lists the nodes new VMs may be placed on. Empty means every
	// online node. It does not limit where existing VMs are looked up.
	Nodes []string

	// GuestCIDR is the network guest addresses are expected in; GuestInfo
	// ignores addresses outside it. The zero prefix accepts the first
	// non-loopback, non-link-local IPv4 address.
	GuestCIDR netip.Prefix

	// CloneConcurrency bounds concurrent clones per target node (PVE's
	// storage and config locks time out under parallel clones); zero means
	// DefaultCloneConcurrency.
	CloneConcurrency int

	// Storage is the target storage of full clones; empty keeps the
	// template's storage. Linked clones always stay on the template's
	// storage.
	Storage string

	// Bridge is the bridge for net0 when a ProvisionSpec's network policy
	// names none; empty keeps the template's bridge, or "vmbr0" when the
	// template has no net0.
	Bridge string

	// Logger receives diagnostics with snake_case keys; nil is silent.
	Logger *slog.Logger

	// HTTPClient is the base HTTP client. nil means a client of our own.
	// When it is set and its Transport is nil or an *http.Transport, that
	// transport is cloned and the TLS settings above applied to the clone;
	// with any other RoundTripper the TLS fields must be empty. Its Timeout
	// is kept when non-zero.
	HTTPClient *http.Client

	// RequestTimeout bounds one HTTP request (not a task, which is bounded
	// by the caller's context); zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// PollInterval is the pause between task status polls; zero means
	// DefaultPollInterval.
	PollInterval time.Duration
	// RetryMin and RetryMax bound the jittered exponential backoff between
	// retries of lock contention and transient errors; zero means
	// DefaultRetryMin and DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// RetryTimeout is how long one call keeps retrying lock contention and
	// transient errors before it gives up with ErrBusy; zero means
	// DefaultRetryTimeout.
	RetryTimeout time.Duration

	// CacheTTL is how long Provision reuses what it read about a template
	// (its node and config), the cluster's storage list and whether the
	// datacenter firewall is on, instead of reading them on every call. A
	// failed Provision drops what it used. Zero means DefaultCacheTTL; a
	// negative value reads everything afresh on every call.
	//
	// The clone itself always copies the template as it is; the cached
	// config only decides the net0 sub-keys kept from the template (VLAN tag,
	// MTU, ...), whether the agent is turned on, whether the root disk is
	// grown, and placement. A change to the template, or to the datacenter
	// firewall, is therefore seen within CacheTTL.
	CacheTTL time.Duration
}

// String describes the Config with TokenSecret redacted.
func (c Config) String() string {
	secret := ""
	if c.TokenSecret != "" {
		secret = redacted
	}
	return fmt.Sprintf("proxmox.Config{URL: %q, TokenID: %q, TokenSecret: %q, CAFile: %q, "+
		"Fingerprint: %q, InsecureSkipVerify: %t, Nodes: %q, GuestCIDR: %v, Storage: %q, "+
		"Bridge: %q}", c.URL, c.TokenID, secret, c.CAFile, c.Fingerprint,
		c.InsecureSkipVerify, c.Nodes, c.GuestCIDR, c.Storage, c.Bridge)
}

// Format makes every fmt verb (%v, %+v, %#v, %s, %d, ...) print String, so
// that the secret cannot leak through a verb that walks struct fields.
func (c Config) Format(f fmt.State, _ rune) {
	_, _ = fmt.Fprint(f, c.String())
}

// LogValue logs the Config as a group without the secret.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", c.URL),
		slog.String("token_id", c.TokenID),
		slog.String("token_secret", redacted),
		slog.String("ca_file", c.CAFile),
		slog.String("fingerprint", c.Fingerprint),
		slog.Bool("insecure_skip_verify", c.InsecureSkipVerify),
		slog.Any("nodes", c.Nodes),
		slog.String("guest_cidr", c.GuestCIDR.String()),
	)
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.CloneConcurrency <= 0 {
		c.CloneConcurrency = DefaultCloneConcurrency
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	if c.RetryTimeout <= 0 {
		c.RetryTimeout = DefaultRetryTimeout
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	return c
}

// validate checks the required fields and normalises URL.
func (c *Config) validate() error {
	var errs []error
	u, err := normalizeURL(c.URL)
	if err != nil {
		errs = append(errs, err)
	}
	c.URL = u
	if c.TokenID == "" || !strings.Contains(c.TokenID, "!") {
		errs = append(errs, errors.New(`TokenID must look like "user@realm!name"`))
	}
	if c.TokenSecret == "" {
		errs = append(errs, errors.New("TokenSecret is required"))
	}
	if c.Fingerprint != "" {
		if _, err := parseFingerprint(c.Fingerprint); err != nil {
			errs = append(errs, err)
		}
	}
	if c.GuestCIDR.IsValid() && c.GuestCIDR != c.GuestCIDR.Masked() {
		c.GuestCIDR = c.GuestCIDR.Masked()
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: proxmox config: %w", agentlab.ErrInvalidArgument,
			errors.Join(errs...))
	}
	return nil
}

// normalizeURL turns the accepted URL spellings into ".../api2/json".
func normalizeURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("URL is required")
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parse URL: %w", err)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("URL scheme %q: only https is allowed", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("URL has no host")
	}
	p := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(p, "/api2/json") {
		p += "/api2/json"
	}
	u.Path, u.RawQuery, u.Fragment, u.User = p, "", "", nil
	return u.String(), nil
}
