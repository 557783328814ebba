package agentlab

import (
	"fmt"
	"net/netip"
	"regexp"
)

// NetworkMode is a sandbox's network isolation mode.
type NetworkMode string

// Network modes. Each maps to the Proxmox firewall: the NIC gets
// firewall=1 and the VM's firewall options, rules and IP sets enforce the
// mode. Proxmox's firewall fails open when the datacenter firewall is off;
// the backend reports that as a warning.
const (
	// NetworkOff drops all traffic in and out except SSH from the host side.
	NetworkOff NetworkMode = "off"

	// NetworkNAT allows outbound traffic to the internet and drops inbound
	// traffic except SSH; private ranges stay unreachable.
	NetworkNAT NetworkMode = "nat"

	// NetworkAllowlist allows outbound traffic only to the allowlist's
	// addresses (an IP set) and drops the rest.
	NetworkAllowlist NetworkMode = "allowlist"
)

// NetworkPolicy is what a profile asks of the network. Backends turn it into
// firewall configuration.
type NetworkPolicy struct {
	Mode   NetworkMode
	Bridge string // e.g. "vmbr1"; empty keeps the template's bridge
	Model  string // NIC model; empty means "virtio"

	// SecurityGroup names a cluster security group added as a group rule.
	SecurityGroup string

	// Allowlist holds the addresses or CIDRs reachable in allowlist mode.
	Allowlist []string
}

var (
	groupName  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{1,17}$`)
	bridgeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,15}$`)
	nicModel   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
)

// Validate checks the policy's values.
func (p NetworkPolicy) Validate() error {
	switch p.Mode {
	case NetworkOff, NetworkNAT, NetworkAllowlist:
	default:
		return fmt.Errorf("%w: network mode %q (want off, nat or allowlist)",
			ErrInvalidArgument, p.Mode)
	}
	// Bridge and model go into the NIC's option string: a comma would add
	// options (firewall=0, tag=...).
	if p.Bridge != "" && !bridgeName.MatchString(p.Bridge) {
		return fmt.Errorf("%w: bridge %q (letters, digits, _ . and -, up to 16 chars)",
			ErrInvalidArgument, p.Bridge)
	}
	if p.Model != "" && !nicModel.MatchString(p.Model) {
		return fmt.Errorf("%w: nic model %q (lower-case letters, digits, _ and -)",
			ErrInvalidArgument, p.Model)
	}
	if p.SecurityGroup != "" && !groupName.MatchString(p.SecurityGroup) {
		return fmt.Errorf("%w: firewall group %q (letters, digits, _ and -, 2-18 chars)",
			ErrInvalidArgument, p.SecurityGroup)
	}
	if p.Mode == NetworkAllowlist && len(p.Allowlist) == 0 {
		return fmt.Errorf("%w: allowlist mode needs at least one allowlist entry",
			ErrInvalidArgument)
	}
	for _, a := range p.Allowlist {
		if _, err := netip.ParsePrefix(a); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("%w: allowlist entry %q is not an IP or CIDR",
				ErrInvalidArgument, a)
		}
	}
	return nil
}
