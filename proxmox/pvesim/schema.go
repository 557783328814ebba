package pvesim

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// keyType is the JSON type PVE's check_type gives a config key on output.
type keyType int

const (
	tString keyType = iota
	tBool
	tInt
	tNumber
)

const errNotInSchema = "property is not defined in schema and the schema does not allow " +
	"additional properties"

// notInEnum is PVE's text for a value outside an enumeration.
func notInEnum(v, enum string) string {
	return fmt.Sprintf("value '%s' does not have a value in the enumeration '%s'", v, enum)
}

// confKeys lists the non-indexed QEMU config keys of the PVE schema
// (qemu-server 9.x confdesc) with their output types.
var confKeys = map[string]keyType{
	"acpi": tBool, "affinity": tString, "agent": tString, "allow-ksm": tBool,
	"amd-sev": tString, "arch": tString, "args": tString, "audio0": tString,
	"autostart": tBool, "balloon": tInt, "bios": tString, "boot": tString,
	"bootdisk": tString, "cdrom": tString, "cicustom": tString, "cipassword": tString,
	"citype": tString, "ciupgrade": tBool, "ciuser": tString, "cores": tInt,
	"cpu": tString, "cpulimit": tNumber, "cpuunits": tInt, "description": tString,
	"efidisk0": tString, "freeze": tBool, "hookscript": tString, "hotplug": tString,
	"hugepages": tString, "intel-tdx": tString, "ivshmem": tString,
	"keephugepages": tBool, "keyboard": tString, "kvm": tBool, "localtime": tBool,
	"lock": tString, "machine": tString, "memory": tString, "meta": tString,
	"migrate_downtime": tNumber, "migrate_speed": tInt, "name": tString,
	"nameserver": tString, "numa": tBool, "onboot": tBool, "ostype": tString,
	"protection": tBool, "reboot": tBool, "rng0": tString, "scsihw": tString,
	"searchdomain": tString, "shares": tInt, "smbios1": tString, "smp": tInt,
	"sockets": tInt, "spice_enhancements": tString, "sshkeys": tString,
	"startdate": tString, "startup": tString, "tablet": tBool, "tags": tString,
	"tdf": tBool, "template": tBool, "tpmstate0": tString, "vcpus": tInt,
	"vga": tString, "vmgenid": tString, "vmstate": tString, "vmstatestorage": tString,
	"watchdog": tString,
}

// indexedKeys lists indexed config keys: prefix and highest index.
var indexedKeys = map[string]int{
	"ide": 3, "sata": 5, "scsi": 30, "virtio": 15, "net": 31, "unused": 255,
	"ipconfig": 31, "serial": 3, "usb": 29, "hostpci": 15, "numa": 7,
	"parallel": 2, "virtiofs": 9,
}

var indexedRE = regexp.MustCompile(`^([a-z]+)(\d+)$`)

// lookupKey returns the type of a config key and whether the schema has it.
func lookupKey(k string) (keyType, bool) {
	if t, ok := confKeys[k]; ok {
		return t, true
	}
	m := indexedRE.FindStringSubmatch(k)
	if m == nil {
		return tString, false
	}
	max, ok := indexedKeys[m[1]]
	if !ok {
		return tString, false
	}
	n, err := strconv.Atoi(m[2])
	if err != nil || n > max || (len(m[2]) > 1 && m[2][0] == '0') {
		return tString, false
	}
	return tString, true
}

func isNetKey(k string) bool      { return strings.HasPrefix(k, "net") && isIndexed(k) }
func isIPConfigKey(k string) bool { return strings.HasPrefix(k, "ipconfig") && isIndexed(k) }

func isIndexed(k string) bool {
	m := indexedRE.FindStringSubmatch(k)
	return m != nil && indexedKeys[m[1]] > 0
}

// isDiskKey reports whether k names a disk drive.
func isDiskKey(k string) bool {
	m := indexedRE.FindStringSubmatch(k)
	if m == nil {
		return k == "efidisk0" || k == "tpmstate0"
	}
	switch m[1] {
	case "ide", "sata", "scsi", "virtio":
		return true
	}
	return false
}

var netModels = []string{
	"e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e",
	"i82551", "i82557b", "i82559er", "ne2k_isa", "ne2k_pci", "pcnet",
	"rtl8139", "virtio", "vmxnet3",
}

// netSubKeys are the keys of PVE's net_fmt with their types.
var netSubKeys = map[string]keyType{
	"macaddr": tString, "model": tString, "bridge": tString, "queues": tInt,
	"rate": tNumber, "tag": tInt, "trunks": tString, "firewall": tBool,
	"link_down": tBool, "mtu": tInt, "host-tunnel": tString,
}

var macRE = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)

// propList splits a PVE property string into ordered key/value pairs; a
// part without "=" gets the key "".
func propList(v string) [][2]string {
	var out [][2]string
	for part := range strings.SplitSeq(v, ",") {
		if part == "" {
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			k, val = "", part
		}
		out = append(out, [2]string{k, val})
	}
	return out
}

// fieldErrs maps parameter names ("net0", "net0.fwgroup") to PVE's texts,
// as in the "errors" of a 400 answer.
type fieldErrs map[string]string

// formatError files the errors of a property string: PVE reports the
// parameter itself as "invalid format - format error" and every bad
// sub-key as "<param>.<key>".
func formatError(k string, sub fieldErrs) fieldErrs {
	if len(sub) == 0 {
		return nil
	}
	sub[k] = "invalid format - format error"
	return sub
}

// parseNet validates a netN value and returns the model, MAC and the other
// sub-keys, or PVE's errors.
func parseNet(k, v string) (model, mac string, rest map[string]string, errs fieldErrs) {
	rest, errs = map[string]string{}, fieldErrs{}
	for _, kv := range propList(v) {
		key, val := kv[0], kv[1]
		switch {
		case key == "" || key == "model":
			model = val
		case slices.Contains(netModels, key):
			model, mac = key, val
		case key == "macaddr":
			mac = val
		default:
			t, ok := netSubKeys[key]
			if !ok {
				errs[k+"."+key] = errNotInSchema
				continue
			}
			if msg := checkType(t, val); msg != "" {
				errs[k+"."+key] = msg
			}
			rest[key] = val
		}
	}
	switch {
	case model == "":
		errs[k+".model"] = "property is missing and it is not optional"
	case !slices.Contains(netModels, model):
		errs[k+".model"] = notInEnum(model, strings.Join(netModels, ", "))
	}
	if mac != "" && !macRE.MatchString(mac) {
		errs[k+".macaddr"] = "value does not match the regex pattern"
	}
	if len(errs) > 0 {
		return "", "", nil, formatError(k, errs)
	}
	return model, strings.ToUpper(mac), rest, nil
}

// formatNet prints a netN value the way PVE stores it.
func formatNet(model, mac string, rest map[string]string) string {
	parts := []string{model + "=" + mac}
	keys := make([]string, 0, len(rest))
	for k := range rest {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+rest[k])
	}
	return strings.Join(parts, ",")
}

func checkType(t keyType, val string) string {
	switch t {
	case tBool:
		if _, ok := parseBool(val); !ok {
			return fmt.Sprintf("type check ('boolean') failed - got '%s'", val)
		}
	case tInt:
		if _, err := strconv.Atoi(val); err != nil {
			return fmt.Sprintf("type check ('integer') failed - got '%s'", val)
		}
	case tNumber:
		if _, err := strconv.ParseFloat(val, 64); err != nil {
			return fmt.Sprintf("type check ('number') failed - got '%s'", val)
		}
	}
	return ""
}

func parseBool(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "1", "true", "on", "yes":
		return true, true
	case "0", "false", "off", "no":
		return false, true
	}
	return false, false
}

var ipconfigSubKeys = []string{"ip", "gw", "ip6", "gw6"}

func checkIPConfig(k, v string) fieldErrs {
	errs := fieldErrs{}
	for _, kv := range propList(v) {
		if !slices.Contains(ipconfigSubKeys, kv[0]) {
			key := kv[0]
			if key == "" {
				key = kv[1]
			}
			errs[k+"."+key] = errNotInSchema
		}
	}
	return formatError(k, errs)
}

var dnsNameRE = regexp.MustCompile(
	`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?$`)

// checkSSHKeys validates a URL-encoded list of OpenSSH public keys.
func checkSSHKeys(v string) string {
	dec, err := url.PathUnescape(v)
	if err != nil {
		return "invalid urlencoded string: " + v
	}
	if _, err := decodeSSHKeys(dec); err != nil {
		return "SSH public key validation error"
	}
	return ""
}

// decodeSSHKeys parses newline-separated authorized_keys lines.
func decodeSSHKeys(s string) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("parse ssh key: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// normalizeValue validates one config value and returns it as stored, or
// PVE's errors.
func normalizeValue(k, v string, gen func() string) (string, fieldErrs) {
	t, ok := lookupKey(k)
	if !ok {
		return "", fieldErrs{k: errNotInSchema}
	}
	if msg := checkType(t, v); msg != "" {
		return "", fieldErrs{k: msg}
	}
	if t == tBool {
		b, _ := parseBool(v)
		return boolStr(b), nil
	}
	return normalizeString(k, v, gen)
}

func normalizeString(k, v string, gen func() string) (string, fieldErrs) {
	one := func(msg string) fieldErrs {
		if msg == "" {
			return nil
		}
		return fieldErrs{k: msg}
	}
	switch {
	case isNetKey(k):
		model, mac, rest, errs := parseNet(k, v)
		if errs != nil {
			return "", errs
		}
		if mac == "" {
			mac = gen()
		}
		return formatNet(model, mac, rest), nil
	case isIPConfigKey(k):
		return v, checkIPConfig(k, v)
	case k == "sshkeys":
		return v, one(checkSSHKeys(v))
	case k == "name" && !dnsNameRE.MatchString(v):
		return "", one("invalid format - value does not look like a valid DNS name")
	case k == "agent":
		return normalizeAgent(v)
	case k == "memory":
		nv, msg := normalizeMemory(v)
		return nv, one(msg)
	case k == "lock", k == "vmstate":
		return "", one("property is read-only")
	}
	return v, nil
}

func normalizeAgent(v string) (string, fieldErrs) {
	if b, ok := parseBool(v); ok {
		return boolStr(b), nil
	}
	errs := fieldErrs{}
	for _, kv := range propList(v) {
		switch kv[0] {
		case "", "enabled", "fstrim_cloned_disks", "freeze-fs-on-backup", "freeze-fs", "type":
		default:
			errs["agent."+kv[0]] = errNotInSchema
		}
	}
	if errs := formatError("agent", errs); errs != nil {
		return "", errs
	}
	return v, nil
}

func normalizeMemory(v string) (string, string) {
	s := strings.TrimPrefix(v, "current=")
	if n, err := strconv.Atoi(s); err != nil || n < 16 {
		return "", "invalid format - value must be an integer of at least 16"
	}
	return v, ""
}

// agentEnabled reports whether an "agent" config value enables the agent.
func agentEnabled(v string) bool {
	for _, kv := range propList(v) {
		if kv[0] == "" || kv[0] == "enabled" {
			b, _ := parseBool(kv[1])
			return b
		}
	}
	return false
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// typedConfig converts stored config strings to the JSON types PVE sends.
func typedConfig(conf map[string]string) map[string]any {
	out := make(map[string]any, len(conf))
	for k, v := range conf {
		out[k] = typedValue(k, v)
	}
	return out
}

func typedValue(k, v string) any {
	t, ok := lookupKey(k)
	if !ok {
		t = snapshotOnlyKeys[k]
	}
	switch t {
	case tBool, tInt:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	case tNumber:
		return v
	}
	return v
}

// diskSizeBytes returns the size= of a disk value in bytes, or 0.
func diskSizeBytes(v string) uint64 {
	for _, kv := range propList(v) {
		if kv[0] == "size" {
			n, _ := parseSize(kv[1])
			return n
		}
	}
	return 0
}

var sizeRE = regexp.MustCompile(`^(\d+(?:\.\d+)?)([KMGT]?)$`)

// parseSize parses PVE disk sizes ("8G", "512M", "1073741824").
func parseSize(s string) (uint64, bool) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	mult := map[string]float64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m[2]]
	return uint64(f * mult), true
}

// formatSize prints bytes the way PVE writes size= (largest exact unit).
func formatSize(b uint64) string {
	units := []struct {
		s string
		n uint64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}}
	for _, u := range units {
		if b >= u.n && b%u.n == 0 {
			return strconv.FormatUint(b/u.n, 10) + u.s
		}
	}
	return strconv.FormatUint(b, 10)
}

// setDiskOption replaces (or appends) key=val in a disk property string.
func setDiskOption(v, key, val string) string {
	kvs := propList(v)
	found := false
	for i := range kvs {
		if kvs[i][0] == key {
			kvs[i][1], found = val, true
		}
	}
	if !found {
		kvs = append(kvs, [2]string{key, val})
	}
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		if kv[0] == "" {
			parts[i] = kv[1]
		} else {
			parts[i] = kv[0] + "=" + kv[1]
		}
	}
	return strings.Join(parts, ",")
}
