package agent

import (
	"errors"
	"fmt"
	"sync"
)

// tasks starts and registers goroutines (hashicorp/raft's goFunc and
// WaitGroup): every goroutine the agent runs is started by Go, so that Wait
// returns only after all of them have. The zero value is ready to use.
type tasks struct {
	wg     sync.WaitGroup
	once   sync.Once
	failed chan error
}

func (t *tasks) init() { t.once.Do(func() { t.failed = make(chan error, 1) }) }

// Go runs f in a new goroutine. A non-nil error from f is offered on Failed
// (the first one only), named after the task.
func (t *tasks) Go(name string, f func() error) {
	t.init()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if err := f(); err != nil {
			select {
			case t.failed <- fmt.Errorf("%s: %w", name, err):
			default:
			}
		}
	}()
}

// Failed receives the first error a task returned.
func (t *tasks) Failed() <-chan error { t.init(); return t.failed }

// Wait waits for every task started with Go.
func (t *tasks) Wait() { t.wg.Wait() }

// ignore returns nil for err when it is target (a server's "closed" error
// after a stop), err otherwise.
func ignore(err, target error) error {
	if errors.Is(err, target) {
		return nil
	}
	return err
}

// cleanups is a stack of undo functions: run calls them last in, first out.
type cleanups []func()

func (c *cleanups) push(f func()) { *c = append(*c, f) }

func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}
