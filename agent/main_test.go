package agent_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: Run must
// return only after every goroutine it started has (tasks, actuators,
// servers), and the cluster helper stops every agent in its cleanup.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
