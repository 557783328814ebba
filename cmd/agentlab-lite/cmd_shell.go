package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/sshx"
)

// shell opens an interactive shell on a pseudo-terminal. Without a
// terminal on stdin it runs the login shell reading commands from stdin,
// as OpenSSH does when it cannot allocate a terminal.
func (c *cli) shell(ctx context.Context, a *app, sb *agentlab.Sandbox, noStdin bool) error {
	in, inOK := c.stdin.(*os.File)
	out, outOK := c.stdout.(*os.File)
	if !inOK || !outOK || !isTerminal(in) {
		req := agentlab.ExecRequest{Shell: `exec "${SHELL:-/bin/sh}" -s`}
		return c.runGuest(ctx, sb, req, noStdin)
	}
	rec, err := sb.Refresh(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(agentlab.ValidStates[agentlab.OpExec], rec.State) || rec.IP == "" {
		return failf(fmt.Sprintf("agentlab-lite sandbox start %d", rec.VMID),
			"sandbox %d is %s; a shell needs it running", rec.VMID, rec.State)
	}
	ep, err := sb.Endpoint(ctx)
	if err != nil {
		return err
	}
	_ = sb.Touch(ctx)
	return c.ptyShell(ctx, a, ep, in, out)
}

func (c *cli) ptyShell(ctx context.Context, a *app, ep agentlab.Endpoint, in, out *os.File) error {
	rows, cols := termSize(out)
	resize := make(chan sshx.WindowSize, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-winch:
				r, cl := termSize(out)
				select {
				case resize <- sshx.WindowSize{Rows: r, Cols: cl}:
				default:
				}
			}
		}
	}()
	if restore, err := makeRaw(in); err == nil {
		defer restore()
	}
	code, err := a.guest.Shell(ctx, ep, sshx.ShellOptions{Term: os.Getenv("TERM"),
		Size: sshx.WindowSize{Rows: rows, Cols: cols}, Resize: resize, Stdin: in, Stdout: out})
	if err != nil {
		return guestError(err, ep.VMID)
	}
	if code != 0 {
		return exitCodeError{code: code}
	}
	return nil
}

// printSSH prints an OpenSSH command line equivalent to "ssh VMID", with a
// known_hosts file that pins the guest's (and the jump host's) key.
func (c *cli) printSSH(ctx context.Context, a *app, sb *agentlab.Sandbox, line string) error {
	rec, err := sb.Refresh(ctx)
	if err != nil {
		return err
	}
	if rec.IP == "" {
		return failf(fmt.Sprintf("agentlab-lite sandbox show %d", rec.VMID),
			"sandbox %d has no address (state %s)", rec.VMID, rec.State)
	}
	kh, err := a.writeKnownHosts(rec)
	if err != nil {
		return err
	}
	common := []string{"-o", "UserKnownHostsFile=" + kh, "-o", "IdentitiesOnly=yes",
		"-i", a.cfg.SSH.Key}
	args := append([]string{"ssh"}, common...)
	if rec.HostKey != "" {
		args = append(args, "-o", "StrictHostKeyChecking=yes")
	} else {
		args = append(args, "-o", "StrictHostKeyChecking=accept-new")
	}
	if j := a.cfg.SSH.Jump; j.Addr != "" {
		// A ProxyCommand rather than -J: options on the command line do not
		// apply to -J's jump host, and its key must be checked too.
		host, port, err := net.SplitHostPort(j.Addr)
		if err != nil {
			host, port = j.Addr, "22"
		}
		proxy := append(append([]string{"ssh"}, common...), "-o", "StrictHostKeyChecking=yes",
			"-p", port, "-W", "%h:%p", dash2(j.User, "root")+"@"+host)
		args = append(args, "-o", "ProxyCommand="+sshx.QuoteArgv(proxy))
	}
	if rec.Port != 0 && rec.Port != 22 {
		args = append(args, "-p", strconv.Itoa(rec.Port))
	}
	args = append(args, dash2(rec.User, "agent")+"@"+rec.IP)
	if line != "" {
		args = append(args, line)
	}
	if c.json {
		return c.printJSON(map[string]any{"argv": args, "known_hosts": kh})
	}
	fmt.Fprintln(c.stdout, sshx.QuoteArgv(args))
	return nil
}

func dash2(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// writeKnownHosts writes STATE/known_hosts/VMID with the guest's pinned key
// and the jump host's key, and returns its path.
func (a *app) writeKnownHosts(rec agentlab.SandboxRecord) (string, error) {
	dir := filepath.Join(a.stateDir, "known_hosts")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create known_hosts directory: %w", err)
	}
	var b strings.Builder
	if rec.HostKey != "" {
		fmt.Fprintf(&b, "%s %s\n", knownHost(rec.IP, rec.Port), rec.HostKey)
	}
	if j := a.cfg.SSH.Jump; j.Addr != "" {
		host, port, err := net.SplitHostPort(j.Addr)
		if err != nil {
			host, port = j.Addr, "22"
		}
		p, _ := strconv.Atoi(port)
		fmt.Fprintf(&b, "%s %s\n", knownHost(host, p), strings.TrimSpace(j.HostKey))
	}
	path := filepath.Join(dir, strconv.Itoa(rec.VMID))
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("write known_hosts: %w", err)
	}
	return path, nil
}

// knownHost renders a host for known_hosts: "host" on port 22, else
// "[host]:port".
func knownHost(host string, port int) string {
	if port == 0 || port == 22 {
		return host
	}
	return fmt.Sprintf("[%s]:%d", host, port)
}
