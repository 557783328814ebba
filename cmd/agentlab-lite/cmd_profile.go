package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

type profileJSON struct {
	Name         string     `json:"name"`
	TemplateVMID int        `json:"template_vmid"`
	NetworkMode  string     `json:"network_mode"`
	TTLMinutes   int        `json:"ttl_minutes_default,omitempty"`
	Source       string     `json:"source"`
	UpdatedAt    *time.Time `json:"updated_at,omitempty"`
}

func cmdProfileList(ctx context.Context, c *cli, args []string) error {
	_, _, err := c.args(c.flags(), args, 0, 0)
	if err != nil {
		return err
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	set, errs := loadProfileDir(cfg.ProfilesDir)
	c.warnProfiles(errs)
	out := make([]profileJSON, 0, len(set.Names()))
	for _, p := range set.All() {
		out = append(out, profileView(p))
	}
	if c.json {
		return c.printJSON(map[string]any{"profiles": out})
	}
	t := newTable(c.stdout, "NAME", "TEMPLATE", "MODE", "UPDATED")
	for _, p := range out {
		t.row(p.Name, fmt.Sprint(p.TemplateVMID), p.NetworkMode, tsp(p.UpdatedAt))
	}
	return t.flush()
}

// loadProfileDir loads a profiles directory file by file: a broken file
// (or a duplicate name) is skipped and reported, so that one bad file does
// not take every profile away. A missing directory is empty.
func loadProfileDir(dir string) (*agentlab.ProfileSet, []error) {
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat)) // only ErrBadPattern
		files = append(files, m...)
	}
	sort.Strings(files)
	var all []agentlab.Profile
	var errs []error
	seen := map[string]string{}
	for _, f := range files {
		set, err := agentlab.LoadProfiles(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range set.All() {
			if prev, ok := seen[p.Name]; ok {
				errs = append(errs, fmt.Errorf("profile %s: name %q is already defined at %s",
					p.Source, p.Name, prev))
				continue
			}
			seen[p.Name] = p.Source
			all = append(all, p)
		}
	}
	set, err := agentlab.NewProfileSet(all...)
	if err != nil { // cannot happen: every profile was validated
		return &agentlab.ProfileSet{}, append(errs, err)
	}
	return set, errs
}

// warnProfiles prints the profile files that could not be loaded.
func (c *cli) warnProfiles(errs []error) {
	for _, err := range errs {
		fmt.Fprintf(c.stderr, "warning: skipped %s\n", oneLine(sdkText(err)))
	}
}

func profileLoadError(err error) error {
	return &cliError{msg: sdkText(err), next: "agentlab-lite profile validate", code: exitFailure,
		cause: err}
}

// profileView describes a profile; UPDATED is its file's modification time.
func profileView(p agentlab.Profile) profileJSON {
	v := profileJSON{Name: p.Name, TemplateVMID: p.TemplateVMID,
		NetworkMode: string(p.NetworkPolicy().Mode), TTLMinutes: p.Behavior.TTLMinutesDefault,
		Source: p.Source}
	file := p.Source
	if i := strings.LastIndexByte(file, ':'); i > 0 {
		file = file[:i]
	}
	if st, err := os.Stat(file); err == nil {
		v.UpdatedAt = tsPtr(st.ModTime())
	}
	return v
}

func cmdProfileValidate(ctx context.Context, c *cli, args []string) error {
	pos, _, err := c.parse(c.flags(), args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		cfg, err := c.loadConfig()
		if err != nil {
			return err
		}
		pos = []string{cfg.ProfilesDir}
	} else if err := c.act(); err != nil {
		return err
	}
	set, err := agentlab.LoadProfiles(pos...)
	if err != nil {
		return profileLoadError(err)
	}
	if c.json {
		return c.printJSON(map[string]any{"valid": true, "profiles": set.Names()})
	}
	fmt.Fprintf(c.stdout, "ok: %s (%s)\n", count(len(set.Names()), "profile"),
		strings.Join(set.Names(), ", "))
	return nil
}
