package proxmox

import (
	"context"
	"fmt"

	"github.com/agentlab-sdk/agentlab"
	px "github.com/luthermonson/go-proxmox"
)

// AllowIPSet is the VM IP set that holds a sandbox's allowlist.
const AllowIPSet = "agentlab-allow"

// ruleComment marks the firewall rules Provision writes.
const ruleComment = "agentlab"

// privateNets are unreachable in NAT mode: RFC 1918, link-local (which
// includes cloud metadata at 169.254.169.254) and their IPv6 counterparts.
var privateNets = []string{
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
	"fc00::/7", "fe80::/10",
}

// fwPlan is the VM firewall a network policy asks for.
type fwPlan struct {
	policyIn, policyOut string
	rules               []px.FirewallRule // top to bottom
	allow               []string          // AllowIPSet entries
}

// planFirewall turns a network policy into VM firewall settings. Every mode
// drops inbound traffic but SSH; "off" drops all outbound traffic, "nat"
// allows it except to private ranges, "allowlist" allows it only to
// AllowIPSet. A security group is attached last, so it cannot reopen what
// the mode closes.
func planFirewall(p agentlab.NetworkPolicy) fwPlan {
	plan := fwPlan{policyIn: "DROP", policyOut: "DROP"}
	plan.rules = append(plan.rules, px.FirewallRule{Type: "in", Action: "ACCEPT",
		Proto: "tcp", Dport: "22", Enable: 1, Comment: ruleComment + ": ssh"})
	switch p.Mode {
	case agentlab.NetworkNAT:
		plan.policyOut = "ACCEPT"
		for _, n := range privateNets {
			plan.rules = append(plan.rules, px.FirewallRule{Type: "out", Action: "DROP",
				Dest: n, Enable: 1, Comment: ruleComment + ": private range"})
		}
	case agentlab.NetworkAllowlist:
		plan.allow = p.Allowlist
		plan.rules = append(plan.rules, px.FirewallRule{Type: "out", Action: "ACCEPT",
			Dest: "+" + AllowIPSet, Enable: 1, Comment: ruleComment + ": allowlist"})
	}
	if p.SecurityGroup != "" {
		plan.rules = append(plan.rules, px.FirewallRule{Type: "group",
			Action: p.SecurityGroup, Enable: 1, Comment: ruleComment + ": security group"})
	}
	return plan
}

// firewallOnClone applies plan to a VM just cloned. A clone's firewall is
// the template's, which is normally empty, so the first attempt writes the
// options, the IP set and the rules without listing what is there, and
// reads the rules back. When that fails, because the template had rules or
// the IP set or a request failed, the full applyFirewall repairs the VM,
// retried on lock contention and transient errors. An IP set other than
// AllowIPSet that the template had is left in place: no rule of the plan
// refers to it.
func (h *Hypervisor) firewallOnClone(ctx context.Context, vm *px.VirtualMachine,
	plan fwPlan) error {
	err := writeFirewall(ctx, vm, plan)
	if err == nil || classify(err) == classCtx {
		return err
	}
	h.log.Debug("proxmox: firewall of the clone differs from the plan; applying in full",
		"vmid", int(vm.VMID), "err", err)
	return h.retry(ctx, "apply firewall", func(ctx context.Context) error {
		return applyFirewall(ctx, vm, plan)
	})
}

// writeFirewall writes plan onto a VM firewall assumed empty and verifies
// the rules.
func writeFirewall(ctx context.Context, vm *px.VirtualMachine, plan fwPlan) error {
	if err := setOptions(ctx, vm, plan); err != nil {
		return err
	}
	if len(plan.allow) > 0 {
		if err := createIPSet(ctx, vm, plan.allow); err != nil {
			return err
		}
	}
	if err := addRules(ctx, vm, plan.rules); err != nil {
		return err
	}
	return verifyRules(ctx, vm, plan.rules)
}

// applyFirewall makes the VM firewall match plan: options, the allowlist IP
// set and the rules, replacing whatever the clone copied from the template.
// It is idempotent, so a failed attempt is repaired by running it again.
func applyFirewall(ctx context.Context, vm *px.VirtualMachine, plan fwPlan) error {
	if err := setOptions(ctx, vm, plan); err != nil {
		return err
	}
	if err := clearRules(ctx, vm); err != nil {
		return err
	}
	if err := syncIPSet(ctx, vm, plan.allow); err != nil {
		return err
	}
	if err := addRules(ctx, vm, plan.rules); err != nil {
		return err
	}
	return verifyRules(ctx, vm, plan.rules)
}

// setOptions turns the VM firewall on with the plan's policies.
func setOptions(ctx context.Context, vm *px.VirtualMachine, plan fwPlan) error {
	opts := &px.FirewallVirtualMachineOption{Enable: true, Dhcp: true,
		PolicyIn: plan.policyIn, PolicyOut: plan.policyOut}
	if err := vm.FirewallOptionSet(ctx, opts); err != nil {
		return fmt.Errorf("set firewall options: %w", err)
	}
	return nil
}

// addRules writes rules so that they end up in order on top of any others.
// PVE inserts each new rule at position 0, so they are written bottom up.
func addRules(ctx context.Context, vm *px.VirtualMachine, rules []px.FirewallRule) error {
	for i := len(rules) - 1; i >= 0; i-- {
		r := rules[i]
		if err := vm.NewFirewallRule(ctx, &r); err != nil {
			return fmt.Errorf("add firewall rule %s %s: %w", r.Type, r.Action, err)
		}
	}
	return nil
}

// clearRules deletes every VM firewall rule, last position first.
func clearRules(ctx context.Context, vm *px.VirtualMachine) error {
	rules, err := vm.FirewallRules(ctx)
	if err != nil {
		return fmt.Errorf("list firewall rules: %w", err)
	}
	for i := len(rules) - 1; i >= 0; i-- {
		if err := vm.FirewallRule(rules[i].Pos).Delete(ctx); err != nil {
			return fmt.Errorf("delete firewall rule %d: %w", rules[i].Pos, err)
		}
	}
	return nil
}

// syncIPSet recreates AllowIPSet with entries, or removes it when entries is
// empty.
func syncIPSet(ctx context.Context, vm *px.VirtualMachine, entries []string) error {
	sets, err := vm.GetFirewallIPSet(ctx)
	if err != nil {
		return fmt.Errorf("list ip sets: %w", err)
	}
	for _, s := range sets {
		if s.Name != AllowIPSet {
			continue
		}
		if err := vm.DeleteFirewallIPSet(ctx, AllowIPSet, true); err != nil {
			return fmt.Errorf("delete ip set %s: %w", AllowIPSet, err)
		}
	}
	if len(entries) == 0 {
		return nil
	}
	return createIPSet(ctx, vm, entries)
}

// createIPSet creates AllowIPSet with entries; it fails if the set exists.
func createIPSet(ctx context.Context, vm *px.VirtualMachine, entries []string) error {
	err := vm.NewFirewallIPSet(ctx, px.FirewallIPSetCreationOption{Name: AllowIPSet,
		Comment: ruleComment + ": allowlist"})
	if err != nil {
		return fmt.Errorf("create ip set %s: %w", AllowIPSet, err)
	}
	for _, e := range entries {
		err := vm.NewFirewallIPSetEntry(ctx, AllowIPSet, px.FirewallIPSetEntryCreationOption{CIDR: e})
		if err != nil {
			return fmt.Errorf("add %s to ip set %s: %w", e, AllowIPSet, err)
		}
	}
	return nil
}

// verifyRules reads the rules back and checks they are the plan, in order
// and enabled.
func verifyRules(ctx context.Context, vm *px.VirtualMachine, want []px.FirewallRule) error {
	got, err := vm.FirewallRules(ctx)
	if err != nil {
		return fmt.Errorf("read back firewall rules: %w", err)
	}
	if len(got) != len(want) {
		return fmt.Errorf("read back firewall rules: got %d rules, wrote %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Type != w.Type || g.Action != w.Action || g.Dest != w.Dest ||
			g.Dport != w.Dport || g.Enable != 1 {
			return fmt.Errorf("read back firewall rule %d: got %s %s dest=%q dport=%q "+
				"enable=%d, want %s %s dest=%q dport=%q", i, g.Type, g.Action, g.Dest,
				g.Dport, g.Enable, w.Type, w.Action, w.Dest, w.Dport)
		}
	}
	return nil
}

// datacenterWarnings reports a datacenter firewall that is off (PVE then
// filters nothing) or that cannot be read. Whether it is on is remembered
// for Config.CacheTTL; a failed read is not.
func (h *Hypervisor) datacenterWarnings(ctx context.Context, mode agentlab.NetworkMode) []string {
	on, ok := h.dcFWOn.get(struct{}{})
	if !ok {
		var opts px.FirewallClusterOption
		err := h.retry(ctx, "read datacenter firewall", func(ctx context.Context) error {
			return h.c.Get(ctx, "/cluster/firewall/options", &opts)
		})
		if err != nil {
			return []string{fmt.Sprintf("cannot read the datacenter firewall options "+
				"(the token needs Sys.Audit on /): %v; network mode %q may not be enforced",
				err, mode)}
		}
		on = opts.Enable == 1
		h.dcFWOn.put(struct{}{}, on)
	}
	if !on {
		return []string{fmt.Sprintf("the datacenter firewall is disabled: network mode %q "+
			"is not enforced until it is enabled", mode)}
	}
	return nil
}
