package proxmox

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/agentlab-sdk/agentlab"
	px "github.com/luthermonson/go-proxmox"
	"golang.org/x/crypto/ssh"
)

// reNotRunning matches PVE's answer for agent calls to a stopped VM.
var reNotRunning = regexp.MustCompile(`(?i)\bVM \d+ (is )?not running\b`)

// hostKeyPath is the guest file GuestInfo reads the SSH host key from.
const hostKeyPath = "/etc/ssh/ssh_host_ed25519_key.pub"

// GuestInfo asks the guest agent for the guest's interfaces and returns the
// first IPv4 address inside GuestCIDR (loopback and addresses outside it are
// ignored), plus the ed25519 SSH host key read through the agent's
// file-read. It returns an error matching [agentlab.ErrNotReady] while the
// agent does not answer or no matching address is configured yet. A host
// key that cannot be read leaves HostKey empty without failing the call.
//
// The addresses are reported by the guest itself; callers should pin the
// host key rather than trust the address alone.
func (h *Hypervisor) GuestInfo(ctx context.Context, vmid int) (agentlab.GuestInfo, error) {
	var out agentlab.GuestInfo
	err := h.onVM(ctx, vmid, func(ctx context.Context, node string) error {
		vm := h.vm(node, vmid)
		var ifaces []*px.AgentNetworkIface
		err := h.retry(ctx, "read guest interfaces", func(ctx context.Context) error {
			var err error
			ifaces, err = vm.AgentGetNetworkIFaces(ctx)
			return err
		})
		if err != nil && reNotRunning.MatchString(errorText(err)) {
			return fmt.Errorf("%w: %w", agentlab.ErrNotReady, err)
		}
		if err != nil {
			return err
		}
		ip, ok := pickAddress(ifaces, h.cfg.GuestCIDR)
		if !ok {
			return fmt.Errorf("%w: guest reports no IPv4 address in %v yet",
				agentlab.ErrNotReady, h.cfg.GuestCIDR)
		}
		out = agentlab.GuestInfo{IP: ip.String(), HostKey: h.hostKey(ctx, vm)}
		return nil
	})
	return out, translate(err, "read guest info of", vmid)
}

// pickAddress returns the first unicast IPv4 address in cidr, or with an
// invalid cidr the first one at all. Loopback, link-local, unspecified,
// multicast and broadcast addresses, and entries the agent left null, are
// skipped: the guest reports them.
func pickAddress(ifaces []*px.AgentNetworkIface, cidr netip.Prefix) (netip.Addr, bool) {
	for _, iface := range ifaces {
		if iface == nil || iface.Name == "lo" {
			continue
		}
		for _, a := range iface.IPAddresses {
			if a == nil {
				continue
			}
			ip, err := netip.ParseAddr(a.IPAddress)
			if err != nil || !ip.Is4() || !ip.IsGlobalUnicast() {
				continue
			}
			if !cidr.IsValid() || cidr.Contains(ip) {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

// hostKey reads the guest's ed25519 host key in authorized_keys format, or
// "" when the agent cannot read it.
func (h *Hypervisor) hostKey(ctx context.Context, vm *px.VirtualMachine) string {
	f, err := vm.AgentFileRead(ctx, hostKeyPath)
	if err != nil {
		h.log.Debug("proxmox: read guest host key", "vmid", int(vm.VMID), "err", err)
		return ""
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(f.Content))
	if err != nil {
		h.log.Debug("proxmox: parse guest host key", "vmid", int(vm.VMID), "err", err)
		return ""
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}
