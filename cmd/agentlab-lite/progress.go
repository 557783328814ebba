package main

import (
	"fmt"
	"sync"

	"github.com/agentlab-sdk/agentlab"
)

// withProgress runs fn and, on a terminal, prints the events the Manager
// publishes meanwhile (of sandbox vmid, or all when vmid is 0) to stderr.
func (c *cli) withProgress(a *app, vmid int, fn func() error) error {
	if !c.interactive() {
		return fn()
	}
	sub, err := a.m.Subscribe(agentlab.SubscribeOptions{
		EventFilter: agentlab.EventFilter{VMID: vmid}})
	if err != nil {
		return fn()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ev := range sub.C() {
			fmt.Fprintln(c.stderr, progressLine(ev))
		}
	}()
	err = fn()
	sub.Close()
	wg.Wait()
	return err
}
