package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cli holds one invocation's streams and global options. Nothing in it is
// global state, so tests run many invocations in one process.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	// forceTTY, when not nil, overrides terminal detection of stdout.
	forceTTY *bool

	json       bool
	configPath string
	debug      bool

	// dryRun makes the command stop, with errDryRun, at its first side
	// effect (reading the configuration, files or stdin, starting a
	// simulator or a supervisor): the command line is parsed and checked
	// only. The fuzz tests use it.
	dryRun bool

	cmd *command // the command being run, for its help
}

// command is one leaf of the command tree.
type command struct {
	path     string // "sandbox new"
	synopsis string // what follows the path in the usage line
	summary  string
	run      func(ctx context.Context, c *cli, args []string) error
	hidden   bool
}

// errHelp reports that help was printed; the exit code is 0.
var errHelp = errors.New("help printed")

// errDryRun reports that a dry run reached the command's first side
// effect; the exit code is 0.
var errDryRun = errors.New("dry run: command line accepted")

// act marks the start of a command's side effects; in a dry run it
// returns errDryRun instead.
func (c *cli) act() error {
	if c.dryRun {
		return errDryRun
	}
	return nil
}

// run is the CLI's entry point: it parses args, runs the command and
// returns the exit code. It never calls os.Exit.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	return c.main(ctx, args)
}

func (c *cli) main(ctx context.Context, args []string) int {
	cmd, rest, err := c.route(args)
	if err == nil && cmd != nil {
		c.cmd = cmd
		err = cmd.run(ctx, c, rest)
	}
	if err == nil || errors.Is(err, errHelp) || errors.Is(err, errDryRun) {
		return exitOK
	}
	return report(c.stderr, err)
}

// route consumes the global flags and the command words and returns the
// leaf command with its remaining arguments. It returns a nil command after
// printing help or the version.
func (c *cli) route(args []string) (*command, []string, error) {
	var path []string
	var rest []string
	version, help := false, false
	for i := 0; i < len(args); i++ {
		a := args[i]
		n, err := c.globalFlag(args[i:], &version, &help)
		if err != nil {
			return nil, nil, err
		}
		if n > 0 {
			i += n - 1
			continue
		}
		if strings.HasPrefix(a, "-") || !isGroup(append(slices.Clone(path), a)) {
			rest = append(rest, args[i:]...)
			break
		}
		path = append(path, a)
	}
	switch {
	case version:
		if len(path) > 0 || len(rest) > 0 {
			return nil, nil, usagef("agentlab-lite --help", "--version takes no command")
		}
		fmt.Fprintln(c.stdout, versionLine())
		return nil, nil, nil
	case len(path) == 0 && len(rest) == 0:
		if help {
			c.printHelp(c.stdout, nil)
			return nil, nil, nil
		}
		c.printHelp(c.stderr, nil)
		return nil, nil, usagef("agentlab-lite help", "no command given")
	}
	return c.leaf(path, rest, help)
}

// globalFlag consumes one global flag at args[0], returning how many
// arguments it used (0 when args[0] is not a global flag). It accepts what
// the flag package accepts after the command: -name or --name, "=value",
// boolean values as strconv.ParseBool reads them.
func (c *cli) globalFlag(args []string, version, help *bool) (int, error) {
	a := args[0]
	if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
		return 0, nil
	}
	name, val, hasVal := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
	var target *bool
	switch name {
	case "json":
		target = &c.json
	case "debug":
		target = &c.debug
	case "version":
		target = version
	case "h", "help":
		target = help
	case "config":
		if hasVal {
			c.configPath = val
			return 1, nil
		}
		if len(args) < 2 {
			return 0, usagef("agentlab-lite --help", "flag --config needs a value")
		}
		c.configPath = args[1]
		return 2, nil
	default:
		return 0, nil
	}
	v, err := true, error(nil)
	if hasVal {
		if v, err = strconv.ParseBool(val); err != nil {
			return 0, usagef("agentlab-lite --help",
				"invalid value %q for flag --%s: want true or false", val, name)
		}
	}
	*target = v
	return 1, nil
}

// leaf finds the command for path; rest starts with its arguments.
func (c *cli) leaf(path, rest []string, help bool) (*command, []string, error) {
	p := strings.Join(path, " ")
	if cmd := lookup(p); cmd != nil {
		if help {
			rest = append([]string{"--help"}, rest...)
		}
		return cmd, rest, nil
	}
	if len(path) > 0 && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		return nil, nil, unknownCommand(p, rest[0])
	}
	if len(rest) > 0 && looksLikeFlag(rest[0]) && !isHelpFlag(rest[0]) {
		name, _, _ := strings.Cut(strings.TrimLeft(rest[0], "-"), "=")
		return nil, nil, usagef(strings.TrimSpace("agentlab-lite help "+p),
			"unknown flag %s", dashed(name))
	}
	if len(path) == 0 {
		return nil, nil, unknownCommand("", rest[0])
	}
	if help || slices.Contains(rest, "-h") || slices.Contains(rest, "--help") {
		c.printHelp(c.stdout, path)
		return nil, nil, nil
	}
	c.printHelp(c.stderr, path)
	return nil, nil, usagef("agentlab-lite "+p+" --help", "%q needs a subcommand", p)
}

// unknownCommand reports a word that names no command; last is that word
// and group the words before it.
func unknownCommand(group, last string) *cliError {
	var names []string
	prefix := strings.Fields(group)
	for _, cmd := range commands {
		words := strings.Fields(cmd.path)
		if cmd.hidden || len(words) <= len(prefix) || !slices.Equal(words[:len(prefix)], prefix) {
			continue
		}
		if w := words[len(prefix)]; !slices.Contains(names, w) {
			names = append(names, w)
		}
	}
	full := strings.TrimSpace(group + " " + last)
	ce := usagef(strings.TrimSpace("agentlab-lite help "+group), "unknown command %q", full)
	if s := suggest(last, names); s != "" {
		ce.hints = []string{fmt.Sprintf("did you mean %q?", strings.TrimSpace(group+" "+s))}
	}
	return ce
}

// lookup returns the command with exactly this path, or nil.
func lookup(path string) *command {
	for i := range commands {
		if commands[i].path == path {
			return &commands[i]
		}
	}
	return nil
}

// isGroup reports whether path names a command or a group of commands.
func isGroup(path []string) bool {
	p := strings.Join(path, " ")
	for _, cmd := range commands {
		if cmd.path == p || strings.HasPrefix(cmd.path, p+" ") {
			return true
		}
	}
	return false
}

// printHelp lists the commands under path (all when nil).
func (c *cli) printHelp(w io.Writer, path []string) {
	p := strings.Join(path, " ")
	if p == "" {
		fmt.Fprint(w, helpIntro)
	}
	fmt.Fprintln(w, "Commands:")
	for _, cmd := range commands {
		if cmd.hidden || (p != "" && !strings.HasPrefix(cmd.path, p+" ")) {
			continue
		}
		fmt.Fprintf(w, "  %-34s %s\n", cmd.path+" "+shortSynopsis(cmd.synopsis), cmd.summary)
	}
	if p == "" {
		fmt.Fprint(w, helpGlobal)
	}
}

func shortSynopsis(s string) string {
	if len(s) > 20 {
		if i := strings.IndexByte(s, '['); i > 0 {
			return strings.TrimSpace(s[:i])
		}
	}
	return s
}

const helpIntro = `agentlab-lite drives agentlab sandboxes and jobs on Proxmox VE (or on the
built-in simulator) with no daemon: each command opens the shared SQLite store.

Usage: agentlab-lite [--config FILE] [--json] COMMAND [ARGS] [FLAGS]

`

const helpGlobal = `
Global flags (before or after the command):
  --config FILE   configuration file (default $AGENTLAB_CONFIG, else
                  the user config directory's agentlab/config.yaml)
  --json          print stable JSON instead of text
  --debug         log SDK debug messages to stderr
  --version       print the version
  -h, --help      help for the command

Flags may come before or after positional arguments. Exit codes: 0 ok,
1 failure, 2 usage error (ssh and exec exit with the remote status).
Run "agentlab-lite help config" for the configuration file format.
`

// flags returns a FlagSet for the current command with the global flags
// registered, so that they are accepted after the command too.
func (c *cli) flags() *flag.FlagSet {
	name := "agentlab-lite"
	if c.cmd != nil {
		name += " " + c.cmd.path
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&c.json, "json", c.json, "print JSON")
	fs.StringVar(&c.configPath, "config", c.configPath, "configuration `file`")
	fs.BoolVar(&c.debug, "debug", c.debug, "log SDK debug messages to stderr")
	return fs
}

// parse parses flags interspersed with positional arguments. Arguments
// after a "--" are returned in rest untouched.
func (c *cli) parse(fs *flag.FlagSet, args []string) (pos, rest []string, err error) {
	if i := slices.Index(args, "--"); i >= 0 {
		args, rest = args[:i], args[i+1:]
	}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, c.flagError(fs, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, rest, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

func (c *cli) flagError(fs *flag.FlagSet, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		c.commandHelp(fs)
		return errHelp
	}
	msg := flagMessage(fs, err.Error())
	ce := usagef(c.helpRef(), "%s", msg)
	switch {
	case c.cmd == nil:
	case c.cmd.path == "ssh" || c.cmd.path == "exec":
		ce.hints = []string{"put the command after --: agentlab-lite " + c.cmd.path +
			" VMID -- CMD ARGS..."}
	case c.cmd.path == "cp" && (msg == "unknown flag -r" || msg == "unknown flag -R"):
		ce.hints = []string{"cp copies directory trees as they are: drop the -r"}
	}
	return ce
}

// flagValueError matches the flag package's complaints about a value:
// `invalid value "x" for flag -n: parse error`, and the boolean variant.
var flagValueError = regexp.MustCompile(
	`^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-(\S+): (.*)$`)

// flagMessage rewrites the flag package's error messages in the CLI's
// terms: flags spelled as they are typed (--name, -n), and "parse error"
// replaced by what the flag wants.
func flagMessage(fs *flag.FlagSet, msg string) string {
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "unknown flag " + dashed(name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return "flag " + dashed(name) + " needs a value"
	}
	m := flagValueError.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	why := m[3]
	if why == "parse error" || strings.HasPrefix(why, "strconv.") {
		why = wantFor(fs.Lookup(m[2]))
	}
	return fmt.Sprintf("invalid value %s for flag %s: %s", m[1], dashed(m[2]), why)
}

// wantFor says what kind of value a built-in flag takes.
func wantFor(f *flag.Flag) string {
	var v any
	if f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			v = g.Get()
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			v = true
		}
	}
	switch v.(type) {
	case bool:
		return "want true or false"
	case int, int64, uint, uint64:
		return "want a whole number"
	case float64:
		return "want a number"
	case time.Duration:
		return "want a duration such as 30s, 5m or 2h"
	}
	return "not a valid value"
}

// dashed spells a flag name as it is typed: -n for one letter, --name
// otherwise.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// looksLikeFlag reports whether a is spelled as a flag (not "-" or "--").
func looksLikeFlag(a string) bool {
	return strings.HasPrefix(a, "-") && strings.TrimLeft(a, "-") != ""
}

// isHelpFlag reports whether a is -h or --help (or -help).
func isHelpFlag(a string) bool {
	return a == "-h" || a == "--help" || a == "-help"
}

// helpRef is the "next:" line pointing at the current command's help.
func (c *cli) helpRef() string {
	if c.cmd == nil {
		return "agentlab-lite help"
	}
	return "agentlab-lite " + c.cmd.path + " --help"
}

// commandHelp prints the current command's usage and flags to stdout.
func (c *cli) commandHelp(fs *flag.FlagSet) {
	fmt.Fprintf(c.stdout, "Usage: agentlab-lite %s %s\n\n%s\n", c.cmd.path, c.cmd.synopsis,
		c.cmd.summary)
	fmt.Fprintln(c.stdout, "\nFlags:")
	fs.VisitAll(func(f *flag.Flag) { writeFlagHelp(c.stdout, f) })
}

// writeFlagHelp prints one flag of a command's help, spelled as it is
// typed ("--tail N"), with its usage and any non-zero default.
func writeFlagHelp(w io.Writer, f *flag.Flag) {
	arg, usage := flag.UnquoteUsage(f)
	if arg != "" {
		arg = " " + arg
	}
	if arg == " value" || arg == " string" {
		arg = " " + strings.ToUpper(f.Name)
	}
	fmt.Fprintf(w, "  %s%s\n    \t%s", dashed(f.Name), arg,
		strings.ReplaceAll(usage, "\n", "\n    \t"))
	switch f.DefValue {
	case "", "0", "false", "[]", "0s":
	default:
		fmt.Fprintf(w, " (default %s)", f.DefValue)
	}
	fmt.Fprintln(w)
}

// args parses flags and positional arguments (see parse) and checks that
// there are between min and max positional ones (max < 0: no limit).
func (c *cli) args(fs *flag.FlagSet, args []string, min, max int) (pos, rest []string,
	err error) {
	pos, rest, err = c.parse(fs, args)
	if err == nil {
		err = c.wantArgs(pos, min, max)
	}
	return pos, rest, err
}

// wantArgs checks the number of positional arguments.
func (c *cli) wantArgs(pos []string, min, max int) error {
	switch {
	case len(pos) < min:
		return usagef(c.helpRef(), "missing argument: usage: agentlab-lite %s %s",
			c.cmd.path, c.cmd.synopsis)
	case max >= 0 && len(pos) > max:
		return usagef(c.helpRef(), "unexpected argument %q", pos[max])
	}
	return nil
}
