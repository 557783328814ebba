package agentlab_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
)

// modelNext is the model of the state machine: the state an operation leads
// to from "from", for the operations valid there.
func modelNext(op agentlab.Op, from agentlab.State) agentlab.State {
	switch op {
	case agentlab.OpPause:
		return agentlab.StateSuspended
	case agentlab.OpResume:
		if from == agentlab.StateSuspended {
			return agentlab.StateReady
		}
	case agentlab.OpStop:
		return agentlab.StateStopped
	case agentlab.OpStart:
		if from != agentlab.StateReady {
			return agentlab.StateRunning
		}
	case agentlab.OpDestroy:
		return agentlab.StateDestroyed
	}
	return from
}

// TestStateMachineModel drives random operation sequences and checks each
// outcome, the recorded state and the VM's power state against the model.
func TestStateMachineModel(t *testing.T) {
	ops := []agentlab.Op{agentlab.OpPause, agentlab.OpResume, agentlab.OpStop,
		agentlab.OpStart, agentlab.OpDestroy, agentlab.OpRenewLease,
		agentlab.OpSnapshotSave, agentlab.OpSnapshotRestore, agentlab.OpSnapshotList,
		agentlab.OpRevert, agentlab.OpExec, opJobEnd}
	byOp := map[agentlab.Op]opCase{}
	for _, oc := range opCases {
		byOp[oc.op] = oc
	}
	rapid.Check(t, func(rt *rapid.T) {
		env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{})
		ctx := context.Background()
		sb, err := env.Manager.Create(ctx, agentlab.CreateRequest{Profile: "test"})
		if err != nil {
			rt.Fatal(err)
		}
		if err := sb.SaveSnapshot(ctx, "s1", nil); err != nil {
			rt.Fatal(err)
		}
		model, saves := agentlab.StateRunning, 0
		steps := rapid.SliceOfN(rapid.SampledFrom(ops), 1, 12).Draw(rt, "ops")
		for _, op := range steps {
			if op == opJobEnd {
				model = endJob(rt, env, sb, model)
				checkAgainstModel(rt, env, sb, model)
				continue
			}
			var err error
			if op == agentlab.OpSnapshotSave {
				saves++
				err = sb.SaveSnapshot(ctx, fmt.Sprintf("save%d", saves), nil)
			} else {
				err = byOp[op].do(ctx, sb)
			}
			valid := slices.Contains(agentlab.ValidStates[op], model)
			switch {
			case valid && err != nil:
				rt.Fatalf("%s in %s: %v", op, model, err)
			case !valid && !errors.Is(err, agentlab.ErrInvalidState):
				rt.Fatalf("%s in %s: want invalid state, got %v", op, model, err)
			case valid:
				model = modelNext(op, model)
			}
			checkAgainstModel(rt, env, sb, model)
		}
	})
}

// opJobEnd is a model step that is not an operation: the job bound to a
// READY or RUNNING sandbox ends, leaving it COMPLETED, FAILED or TIMEOUT.
const opJobEnd agentlab.Op = "job_end"

// endJob applies opJobEnd: from READY or RUNNING it records a job-end state
// drawn by rapid and returns it; elsewhere it changes nothing.
func endJob(rt *rapid.T, env *agentlabtest.Env, sb *agentlab.Sandbox,
	model agentlab.State) agentlab.State {
	if model != agentlab.StateReady && model != agentlab.StateRunning {
		return model
	}
	end := rapid.SampledFrom([]agentlab.State{agentlab.StateCompleted,
		agentlab.StateFailed, agentlab.StateTimeout}).Draw(rt, "end")
	_, err := env.Store.UpdateSandbox(context.Background(), sb.VMID(),
		func(r *agentlab.SandboxRecord) error { r.State = end; return nil })
	if err != nil {
		rt.Fatal(err)
	}
	return end
}

func checkAgainstModel(rt *rapid.T, env *agentlabtest.Env, sb *agentlab.Sandbox,
	model agentlab.State) {
	rec, err := sb.Refresh(context.Background())
	if err != nil {
		rt.Fatal(err)
	}
	if rec.State != model {
		rt.Fatalf("state %s, model %s", rec.State, model)
	}
	vm, err := env.Hypervisor.Status(context.Background(), sb.VMID())
	if model == agentlab.StateDestroyed {
		if !errors.Is(err, agentlab.ErrNotFound) {
			rt.Fatalf("destroyed sandbox has a VM: %v", err)
		}
		return
	}
	if err != nil || vm.Power != powerFor(model) {
		rt.Fatalf("vm power %s (err %v), model %s", vm.Power, err, model)
	}
}
