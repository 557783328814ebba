package main

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Checks on the command line, made before any side effect (opening the
// store, creating the SSH key, starting a supervisor). The SDK checks the
// same things again; these copies only move the error in front of the
// first side effect.
//
// TODO: call the SDK's validators instead once it exports them (labels,
// names, environment names, artifact paths); until then these mirror
// CreateRequest.validate and JobSpec.validate in the agentlab package.

var (
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,62}[A-Za-z0-9])?$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// Limits of labels, as the SDK enforces them.
const (
	maxLabels     = 64
	maxLabelValue = 256
)

// VMID range of Proxmox VE.
const (
	minVMID = 100
	maxVMID = 999999999
)

// splitPair splits "k=v"; the key must not be empty.
func splitPair(s string) (k, v string, err error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", "", fmt.Errorf("%q is not key=value", s)
	}
	return k, v, nil
}

// labelsFlag collects repeated --label k=v flags, checking each label.
type labelsFlag map[string]string

// String implements flag.Value.
func (l labelsFlag) String() string { return labelString(l) }

// Set implements flag.Value; it parses one occurrence of the flag.
func (l labelsFlag) Set(s string) error {
	k, v, err := splitPair(s)
	if err != nil {
		return err
	}
	if err := checkLabel(k, v); err != nil {
		return err
	}
	if _, dup := l[k]; !dup && len(l) >= maxLabels {
		return fmt.Errorf("more than %d labels", maxLabels)
	}
	l[k] = v
	return nil
}

// checkLabel checks one label's key and value.
func checkLabel(k, v string) error {
	switch {
	case !labelKeyRE.MatchString(k):
		return fmt.Errorf("label key %q: letters, digits, . _ / and -, up to 64, starting "+
			"and ending with a letter or digit", k)
	case len(v) > maxLabelValue:
		return fmt.Errorf("label %q: the value is longer than %d bytes", k, maxLabelValue)
	}
	return nil
}

// envFlag collects repeated --env K=V flags, checking each name.
type envFlag map[string]string

// String implements flag.Value.
func (e envFlag) String() string { return labelString(e) }

// Set implements flag.Value; it parses one occurrence of the flag.
func (e envFlag) Set(s string) error {
	k, v, err := splitPair(s)
	if err != nil {
		return err
	}
	if !envNameRE.MatchString(k) {
		return envNameError(k)
	}
	e[k] = v
	return nil
}

func envNameError(k string) error {
	return fmt.Errorf("%q is not an environment variable name (letters, digits and _, "+
		"not starting with a digit)", k)
}

// parseSecret reads a --secret value, "NAME" or "NAME=ENV": the secret NAME
// takes the value of the environment variable ENV (default NAME).
func parseSecret(s string) (name, from string, err error) {
	name, from, ok := strings.Cut(s, "=")
	if !ok {
		from = name
	}
	for _, n := range []string{name, from} {
		if !envNameRE.MatchString(n) {
			return "", "", envNameError(n)
		}
	}
	return name, from, nil
}

// checkName checks a sandbox name given with --name.
func checkName(n string) error {
	if n != "" && !nameRE.MatchString(n) {
		return fmt.Errorf("sandbox name %q: letters, digits and -, up to 63, not starting "+
			"or ending with -", n)
	}
	return nil
}

// checkVMID checks a VMID given with --vmid (0: pick a free one).
func checkVMID(id int) error {
	if id != 0 && (id < minVMID || id > maxVMID) {
		return fmt.Errorf("VMID %d is outside %d-%d", id, minVMID, maxVMID)
	}
	return nil
}

// checkArtifact checks an --artifact path: relative, inside the work
// directory.
func checkArtifact(p string) error {
	clean := path.Clean(p)
	if p == "" || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return fmt.Errorf("artifact path %q must stay inside the work directory", p)
	}
	return nil
}
