package proxmox

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/agentlab-sdk/agentlab"
	px "github.com/luthermonson/go-proxmox"
)

var _ agentlab.Hypervisor = (*Hypervisor)(nil)

// Hypervisor implements [agentlab.Hypervisor] over the Proxmox VE API. Create
// it with [New]. It is safe for concurrent use and holds no resources that
// need closing: idle HTTP connections expire on their own.
type Hypervisor struct {
	cfg Config
	c   *px.Client
	hc  *http.Client
	log *slog.Logger

	mu      sync.Mutex
	nodeOf  map[int]string           // last known node per VMID
	sems    map[string]chan struct{} // clone slots per target node
	pending map[string]uint64        // memory of clones in flight per node

	templates *memo[int, templateInfo]             // template node and config per VMID
	storages  *memo[struct{}, px.ClusterResources] // /cluster/resources?type=storage
	dcFWOn    *memo[struct{}, bool]                // datacenter firewall enabled?
}

// New validates cfg, builds the API client and checks that the API answers
// with the configured trust and token (GET /version). Errors for bad
// configuration match [agentlab.ErrInvalidArgument]; no error text contains
// the token secret.
//
// go-proxmox's own request retry is left off: it would replay POSTs, and a
// replayed clone must never be sent blindly. Hypervisor retries by itself,
// after checking what the first attempt did.
func New(ctx context.Context, cfg Config) (*Hypervisor, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	hc, err := httpClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: proxmox config: %w", agentlab.ErrInvalidArgument, err)
	}
	if cfg.InsecureSkipVerify && cfg.Fingerprint == "" {
		cfg.Logger.Warn("proxmox: TLS verification is off (InsecureSkipVerify)",
			"url", cfg.URL)
	}
	client := px.NewClient(cfg.URL,
		px.WithHTTPClient(hc),
		px.WithAPIToken(cfg.TokenID, cfg.TokenSecret),
		px.WithLogger(leveledLogger{cfg.Logger}),
	)
	h := &Hypervisor{
		cfg: cfg, c: client, hc: hc, log: cfg.Logger,
		nodeOf: map[int]string{}, sems: map[string]chan struct{}{},
		pending:   map[string]uint64{},
		templates: newMemo[int, templateInfo](cfg.CacheTTL),
		storages:  newMemo[struct{}, px.ClusterResources](cfg.CacheTTL),
		dcFWOn:    newMemo[struct{}, bool](cfg.CacheTTL),
	}
	var v px.Version
	if err := client.Get(ctx, "/version", &v); err != nil {
		h.Close()
		return nil, translate(err, "connect to "+cfg.URL, 0)
	}
	h.log.Debug("proxmox: connected", "url", cfg.URL, "version", v.Version)
	return h, nil
}

// Close closes the idle connections of the API client. Calls in flight
// finish; the Hypervisor stays usable and opens new connections on demand.
// It always returns nil.
func (h *Hypervisor) Close() error {
	h.hc.CloseIdleConnections()
	return nil
}

// String identifies the Hypervisor by its API URL and token ID.
func (h *Hypervisor) String() string {
	return fmt.Sprintf("proxmox.Hypervisor(%s as %s)", h.cfg.URL, h.cfg.TokenID)
}

// Format prints String for every verb, so that no verb walks the client
// (which holds the token).
func (h *Hypervisor) Format(f fmt.State, _ rune) {
	_, _ = fmt.Fprint(f, h.String())
}

// vm returns a request-free handle to vmid on node.
func (h *Hypervisor) vm(node string, vmid int) *px.VirtualMachine {
	return h.c.NodeRef(node).VirtualMachineRef(vmid)
}

// cluster returns a request-free cluster handle.
func (h *Hypervisor) cluster() *px.Cluster {
	return (&px.Cluster{}).New(h.c)
}

// leveledLogger routes go-proxmox's diagnostics to slog at debug level.
type leveledLogger struct{ l *slog.Logger }

func (g leveledLogger) Debugf(format string, v ...any) { g.logf(format, v) }
func (g leveledLogger) Infof(format string, v ...any)  { g.logf(format, v) }
func (g leveledLogger) Warnf(format string, v ...any)  { g.logf(format, v) }
func (g leveledLogger) Errorf(format string, v ...any) { g.logf(format, v) }

func (g leveledLogger) logf(format string, v []any) {
	if !g.l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	g.l.Debug(fmt.Sprintf(format, v...), "component", "go-proxmox")
}
