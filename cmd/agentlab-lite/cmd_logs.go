package main

import (
	"context"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// followPoll is how often --follow looks for events written by other
// processes (they are not pushed across processes).
const followPoll = 500 * time.Millisecond

// logsQuery is what "logs" prints: a sandbox's events, optionally only
// the last ones, and optionally those of earlier sandboxes with its VMID.
type logsQuery struct {
	sb     *agentlab.Sandbox
	filter agentlab.EventFilter
	all    bool
}

// logsJSON is the JSON form of "logs" without --follow.
type logsJSON struct {
	VMID   int         `json:"vmid"`
	Events []eventJSON `json:"events"`
}

func cmdLogs(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	tail := fs.Int("tail", 0, "only the last `N` events (default: all)")
	all := fs.Bool("all", false, "include the events of earlier, destroyed sandboxes "+
		"that held the same VMID")
	follow := fs.Bool("follow", false, "keep printing new events until the sandbox is "+
		"destroyed or you press Ctrl-C (with --json: one event per line)")
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
	q := &logsQuery{sb: sb, all: *all,
		filter: agentlab.EventFilter{VMID: sb.VMID(), Limit: *tail, Last: *tail > 0}}
	if c.json && !*follow {
		evs, err := q.next(ctx, a)
		if err != nil {
			return err
		}
		return c.printJSON(logsJSON{VMID: sb.VMID(), Events: eventViews(evs)})
	}
	return c.followLogs(ctx, a, q, *follow)
}

// next returns the sandbox's events after the last one returned.
func (q *logsQuery) next(ctx context.Context, a *app) ([]agentlab.Event, error) {
	evs, err := a.m.Events(ctx, q.filter)
	if err != nil {
		return nil, err
	}
	q.filter.Limit, q.filter.Last = 0, false
	since := q.sb.Record().CreatedAt
	out := evs[:0]
	for _, ev := range evs {
		q.filter.AfterID = ev.ID
		if q.all || !ev.Time.Before(since) { // else: an earlier sandbox with this VMID
			out = append(out, ev)
		}
	}
	return out, nil
}

// followLogs prints the events, and with follow the new ones as they come
// until the sandbox is destroyed or ctx ends.
func (c *cli) followLogs(ctx context.Context, a *app, q *logsQuery, follow bool) error {
	for {
		evs, err := q.next(ctx, a)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := c.printEvent(ev); err != nil {
				return err
			}
		}
		if !follow {
			return nil
		}
		if len(evs) == 0 {
			rec, err := q.sb.Refresh(ctx)
			if err == nil && rec.State == agentlab.StateDestroyed {
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
		return c.printJSONLine(eventView(ev))
	}
	writeLogLine(c.stdout, ev)
	return nil
}
