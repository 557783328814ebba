package pvesim_test

import (
	"context"
	"fmt"
	"log"
	"time"

	proxmox "github.com/luthermonson/go-proxmox"

	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

// Example clones a template with go-proxmox, starts the clone and asks its
// guest agent for the address.
func Example() {
	srv, err := pvesim.NewServer(pvesim.Config{Nodes: []string{"pve1"}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if err := srv.AddTemplate("pve1", 9000, "debian-13", nil); err != nil {
		log.Fatal(err)
	}
	hc := srv.Client()
	defer hc.CloseIdleConnections()
	c := proxmox.NewClient(srv.URL(), proxmox.WithHTTPClient(hc),
		proxmox.WithAPIToken(srv.TokenID(), srv.TokenSecret()))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tmpl, err := c.NodeRef("pve1").VirtualMachine(ctx, 9000)
	if err != nil {
		log.Fatal(err)
	}
	_, task, err := tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: 101, Name: "sbx-101"})
	if err != nil {
		log.Fatal(err)
	}
	if err := task.Wait(ctx, 10*time.Millisecond, 5*time.Second); err != nil {
		log.Fatal(err)
	}
	vm, err := c.NodeRef("pve1").VirtualMachine(ctx, 101)
	if err != nil {
		log.Fatal(err)
	}
	task, err = vm.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := task.Wait(ctx, 10*time.Millisecond, 5*time.Second); err != nil {
		log.Fatal(err)
	}
	ifaces, err := vm.AgentGetNetworkIFaces(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(vm.Name, ifaces[0].Name, ifaces[0].IPAddresses[0].IPAddress)
	// Output: sbx-101 eth0 10.77.0.103
}
