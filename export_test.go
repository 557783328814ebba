package agentlab

import "context"

// TransitionForTest moves s to state "to" through the Manager's one
// compare-and-set transition path, for the external state-machine tests.
func (s *Sandbox) TransitionForTest(ctx context.Context, to State) error {
	_, err := s.m.transition(ctx, s, to, nil)
	return err
}
