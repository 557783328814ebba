package proxmox

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/agentlab-sdk/agentlab"
	px "github.com/luthermonson/go-proxmox"
)

var diskKeyRE = regexp.MustCompile(`^(scsi|virtio|sata|ide|efidisk|tpmstate)\d+$`)

func isDiskKey(k string) bool { return diskKeyRE.MatchString(k) }

// netKeys are the net0 sub-keys kept from the template besides model, MAC
// and bridge. There is no "fwgroup": PVE has no such key, and security
// groups are firewall rules.
var netKeys = []string{"tag", "trunks", "mtu", "queues", "rate", "link_down"}

// netAllKeys are all named net sub-keys; any other key is a model name in
// PVE's "<model>=<mac>" shorthand.
var netAllKeys = append([]string{"model", "macaddr", "bridge", "firewall", "host-tunnel"},
	netKeys...)

// net0 builds the net0 value: the policy's model (virtio by default) with
// cur's MAC if it has one, the bridge (policy, Config.Bridge, the template's, then
// vmbr0), firewall=1 and the template's VLAN and link settings.
func (h *Hypervisor) net0(p agentlab.NetworkPolicy, cur string) string {
	kv := propMap(cur)
	model := p.Model
	if model == "" {
		model = "virtio"
	}
	bridge := firstNonEmpty(p.Bridge, h.cfg.Bridge, kv["bridge"], "vmbr0")
	mac := kv["macaddr"]
	for k, v := range kv {
		if !slices.Contains(netAllKeys, k) && v != "" {
			mac = v // "<model>=<mac>"
		}
	}
	var b strings.Builder
	b.WriteString(model)
	if mac != "" {
		b.WriteString("=" + mac)
	}
	b.WriteString(",bridge=" + bridge + ",firewall=1")
	for _, k := range netKeys {
		if v, ok := kv[k]; ok {
			b.WriteString("," + k + "=" + v)
		}
	}
	return b.String()
}

// withoutMAC drops the MAC from a net property string: "macaddr=..." and
// the "<model>=<mac>" shorthand (the model is rewritten by net0 anyway).
func withoutMAC(net string) string {
	var keep []string
	for _, part := range strings.Split(net, ",") {
		k, _, _ := strings.Cut(strings.TrimSpace(part), "=")
		if k != "" && k != "macaddr" && slices.Contains(netAllKeys, k) {
			keep = append(keep, part)
		}
	}
	return strings.Join(keep, ",")
}

// propMap parses a PVE property string ("virtio=AA:..,bridge=vmbr0").
func propMap(s string) map[string]string {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		out[k] = v
	}
	return out
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// resize grows the boot disk to spec.DiskGB when it is smaller.
func (h *Hypervisor) resize(ctx context.Context, spec agentlab.ProvisionSpec,
	vm *px.VirtualMachine, conf vmConfig) error {
	if spec.DiskGB <= 0 {
		return nil
	}
	disk := bootDisk(conf)
	if disk == "" {
		return fmt.Errorf("resize: %w: no boot disk in the template config", agentlab.ErrInvalidArgument)
	}
	cur, ok := diskSize(conf.str(disk))
	want := uint64(spec.DiskGB) << 30
	if ok && cur >= want {
		return nil
	}
	size := strconv.Itoa(spec.DiskGB) + "G"
	err := h.retry(ctx, "resize", func(ctx context.Context) error {
		return h.run(ctx, func(ctx context.Context) (*px.Task, error) {
			return vm.ResizeDisk(ctx, disk, size)
		})
	})
	if err != nil {
		return fmt.Errorf("resize %s to %s: %w", disk, size, err)
	}
	return nil
}

// bootDisk names the disk the VM boots from: the first disk in "boot:
// order=...", else "bootdisk", else the first of scsi0, virtio0, sata0,
// ide0 that is not a CD-ROM.
func bootDisk(conf vmConfig) string {
	usable := func(k string) bool {
		v := conf.str(k)
		return isDiskKey(k) && v != "" && !strings.Contains(v, "media=cdrom")
	}
	if order, ok := strings.CutPrefix(conf.str("boot"), "order="); ok {
		for _, d := range strings.Split(order, ";") {
			if usable(d) {
				return d
			}
		}
	}
	if d := conf.str("bootdisk"); usable(d) {
		return d
	}
	for _, d := range []string{"scsi0", "virtio0", "sata0", "ide0"} {
		if usable(d) {
			return d
		}
	}
	return ""
}

// diskSize reads "size=" from a drive property string, in bytes.
func diskSize(v string) (uint64, bool) {
	s, ok := propMap(v)["size"]
	if !ok || s == "" {
		return 0, false
	}
	mult := uint64(1)
	switch s[len(s)-1] {
	case 'K':
		mult = 1 << 10
	case 'M':
		mult = 1 << 20
	case 'G':
		mult = 1 << 30
	case 'T':
		mult = 1 << 40
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, false
	}
	return uint64(f * float64(mult)), true
}
