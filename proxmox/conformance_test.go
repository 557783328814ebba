package proxmox_test

import (
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab/agentlabtest"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

// TestConformance runs the agentlabtest Hypervisor suite against proxmox
// over a simulated cluster, with a fresh simulator per subtest.
func TestConformance(t *testing.T) {
	agentlabtest.RunHypervisorTests(t, func(t *testing.T) agentlabtest.HypervisorHarness {
		srv := startSim(t, pvesim.Config{})
		enableDatacenterFirewall(t, srv)
		return agentlabtest.HypervisorHarness{
			Hypervisor: newHV(t, srv, nil), Template: templateID, FirstVMID: 200,
			Timeout: 20 * time.Second,
		}
	})
}
