package agentlabtest_test

import (
	"testing"

	"github.com/agentlab-sdk/agentlab/agentlabtest"
)

func TestFakeHypervisorConformance(t *testing.T) {
	agentlabtest.RunHypervisorTests(t, func(t *testing.T) agentlabtest.HypervisorHarness {
		hv, err := agentlabtest.NewHypervisor(agentlabtest.HypervisorOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hv.Close() })
		return agentlabtest.HypervisorHarness{Hypervisor: hv, Template: 9000, FirstVMID: 100}
	})
}
