package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
)

func cmdVersion(ctx context.Context, c *cli, args []string) error {
	if _, _, err := c.parse(c.flags(), args); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(map[string]string{"version": versionLine()})
	}
	fmt.Fprintln(c.stdout, versionLine())
	return nil
}

func cmdHelp(ctx context.Context, c *cli, args []string) error {
	pos, _, err := c.parse(c.flags(), args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		c.printHelp(c.stdout, nil)
		return nil
	case pos[0] == "config":
		fmt.Fprint(c.stdout, configHelp)
		return nil
	}
	if cmd := lookup(strings.Join(pos, " ")); cmd != nil {
		c.cmd = cmd
		return cmd.run(ctx, c, []string{"--help"})
	}
	if isGroup(pos) {
		c.printHelp(c.stdout, pos)
		return nil
	}
	return unknownCommand(strings.Join(pos[:len(pos)-1], " "), pos[len(pos)-1])
}

const configHelp = `Configuration file (YAML, unknown keys are refused)

Found at --config FILE, else $AGENTLAB_CONFIG, else the user config directory's
agentlab/config.yaml (~/.config/agentlab/config.yaml on Linux). Relative paths
are relative to the file's directory; "agentlab-lite sim serve --dir DIR" writes
a complete one to DIR/config.yaml.

proxmox:
  url: https://pve1.example.net:8006      # required
  token_id: agentlab@pve!cli              # required
  token_secret_file: pve-token            # one of token_secret, token_secret_file,
                                          # token_secret_env (name of a variable)
  tls:
    ca_file: pve-root-ca.pem              # /etc/pve/pve-root-ca.pem copied here
    fingerprint: AB:CD:...                # or pin the certificate's SHA-256
    insecure_skip_verify: false           # labs only
  nodes: [pve1, pve2]                     # where new VMs may go (default: all online)
  guest_cidr: 10.77.0.0/16                # where guest addresses are expected
  bridge: vmbr1                           # net0 bridge when a profile names none
  storage: local-lvm                      # target of full clones
  clone_concurrency: 2                    # clones per node at once
  poll_interval: 1s                       # task status polling
vmid_min: 1000                            # automatic VMIDs (default 1000-8999)
vmid_max: 8999
owner: agentlab                           # ownership marker on every VM
ssh:
  key: id_ed25519                         # created (0600) on first use
  trust_on_first_use: false               # accept unpinned guest host keys
  connect_timeout: 30s
  jump:                                   # reach guests through the node (ProxyJump)
    addr: pve1.example.net:22
    user: root
    host_key: ssh-ed25519 AAAA...         # required with addr
profiles_dir: profiles                    # default: next to this file
database: agentlab.db                     # SQLite, shared by every CLI process
artifacts_dir: artifacts                  # job logs and artifacts
state_dir: state                          # supervisor log, known_hosts files
timeouts:
  ready: 5m                               # wait for a new guest
  stop: 30s                               # graceful shutdown before power off
  job_heartbeat: 10m                      # silence before a job is taken over
maintenance:                              # the reconcile --watch process
  reconcile_interval: 30s
  reap_interval: 10s                      # expired leases
  idle_interval: 1m                       # idle stop
`

func cmdCompletion(ctx context.Context, c *cli, args []string) error {
	pos, _, err := c.args(c.flags(), args, 1, 1)
	if err != nil {
		return err
	}
	groups := completionWords()
	switch pos[0] {
	case "bash":
		fmt.Fprint(c.stdout, bashCompletion(groups))
	case "zsh":
		fmt.Fprint(c.stdout, "#compdef agentlab-lite\nautoload -U +X bashcompinit && bashcompinit\n"+
			bashCompletion(groups))
	default:
		return usagef(c.helpRef(), "unknown shell %q (want bash or zsh)", pos[0])
	}
	return nil
}

// completionWords maps each command prefix ("", "sandbox", "sandbox
// snapshot") to the words that may follow it.
func completionWords() map[string][]string {
	out := map[string][]string{}
	for _, cmd := range commands {
		if cmd.hidden {
			continue
		}
		words := strings.Fields(cmd.path)
		for i := range words {
			prefix := strings.Join(words[:i], " ")
			if !slices.Contains(out[prefix], words[i]) {
				out[prefix] = append(out[prefix], words[i])
			}
		}
	}
	return out
}

func bashCompletion(groups map[string][]string) string {
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# bash completion for agentlab-lite\n_agentlab_lite() {\n" +
		"  local cur words path i\n  cur=\"${COMP_WORDS[COMP_CWORD]}\"\n  path=\"\"\n" +
		"  for ((i=1; i<COMP_CWORD; i++)); do\n" +
		"    case \"${COMP_WORDS[i]}\" in -*) ;; *) path=\"${path:+$path }${COMP_WORDS[i]}\" ;; esac\n" +
		"  done\n  case \"$path\" in\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "    %q) words=%q ;;\n", k, strings.Join(groups[k], " "))
	}
	b.WriteString("    *) words=\"--json --config --help\" ;;\n  esac\n" +
		"  COMPREPLY=($(compgen -W \"$words --json --config --help\" -- \"$cur\"))\n}\n" +
		"complete -o default -F _agentlab_lite agentlab-lite\n")
	return b.String()
}
