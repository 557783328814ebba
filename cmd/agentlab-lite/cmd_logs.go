package main

import (
	"context"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// followPoll is how often --follow looks for events written by other
// processes (they are not pushed across processes).
const followPoll = 500 * time.Millisecond

func cmdLogs(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	tail := fs.Int("tail", 0, "only the last `N` events (default: all)")
	all := fs.Bool("all", false, "include the events of earlier, destroyed sandboxes "+
		"that held the same VMID")
	follow := fs.Bool("follow", false, "keep printing new events until the sandbox is "+
		"destroyed or you press Ctrl-C")
	a, sb, _, err := c.oneSandbox(ctx, fs, args, 1, func([]string) error {
		if *tail < 0 {
			return usagef(c.helpRef(), "--tail must not be negative")
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	f := agentlab.EventFilter{VMID: sb.VMID(), Limit: *tail, Last: *tail > 0}
	for {
		evs, err := a.m.Events(ctx, f)
		if err != nil {
			return err
		}
		since := sb.Record().CreatedAt
		for _, ev := range evs {
			f.AfterID = ev.ID
			if !*all && ev.Time.Before(since) {
				continue // an earlier sandbox with this VMID
			}
			if err := c.printEvent(ev); err != nil {
				return err
			}
		}
		f.Limit, f.Last = 0, false
		if !*follow {
			return nil
		}
		if len(evs) == 0 {
			if rec, err := sb.Refresh(ctx); err == nil && rec.State == agentlab.StateDestroyed {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(followPoll):
		}
	}
}

// printEvent prints an event as a logs line, or as one JSON object per
// line in JSON mode.
func (c *cli) printEvent(ev agentlab.Event) error {
	if c.json {
		return c.printJSONLine(ev)
	}
	writeLogLine(c.stdout, ev)
	return nil
}
