package scenario

import (
	"context"
	"errors"
	"io"
	"time"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// The admin calls the scenarios make, from the client namespace (see
// Cluster.dial), each bounded by its own timeout.

// Status asks one node for its status.
func (c *Cluster) Status(ctx context.Context, node string) (*hmv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	return hmv1.NewAdminClient(c.conns[node]).Status(ctx, &hmv1.StatusRequest{})
}

// Roles asks one node for the roles.
func (c *Cluster) Roles(ctx context.Context, node string) (*hmv1.ListRolesResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	return hmv1.NewAdminClient(c.conns[node]).ListRoles(ctx, &hmv1.ListRolesRequest{})
}

// TransferLeader asks the node to hand Raft leadership to target.
func (c *Cluster) TransferLeader(ctx context.Context, via, target string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := hmv1.NewAdminClient(c.conns[via]).TransferLeadership(ctx, &hmv1.TransferLeadershipRequest{Target: target})
	return err
}

// Members asks one node for the members, with their checks.
func (c *Cluster) Members(ctx context.Context, node string) (*hmv1.MembersResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	return hmv1.NewAdminClient(c.conns[node]).Members(ctx, &hmv1.MembersRequest{})
}

// Events returns the events with a sequence number greater than since, as
// node's state has them (`harbormaster events`).
func (c *Cluster) Events(ctx context.Context, node string, since uint64) ([]*hmv1.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	stream, err := hmv1.NewAdminClient(c.conns[node]).WatchEvents(ctx, &hmv1.WatchEventsRequest{Since: since})
	if err != nil {
		return nil, err
	}
	var out []*hmv1.Event
	for {
		e, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

// Move asks the cluster (through node via) to hand role over to node at
// once (`harbormaster move --no-wait`).
func (c *Cluster) Move(ctx context.Context, via, role, node string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := hmv1.NewAdminClient(c.conns[via]).Move(ctx, &hmv1.MoveRequest{Role: role, Node: node, Actor: "chaos/scenario"})
	return err
}

// ApplySpec replaces the cluster's spec with doc through node via
// (`harbormaster spec apply`).
func (c *Cluster) ApplySpec(ctx context.Context, via, doc string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := hmv1.NewAdminClient(c.conns[via]).ApplySpec(ctx, &hmv1.ApplySpecRequest{Document: doc, Actor: "chaos/scenario"})
	return err
}

// Drain sets or clears node's drained flag through node via (`harbormaster
// drain` without waiting, `undrain`).
func (c *Cluster) Drain(ctx context.Context, via, node string, drained bool) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := hmv1.NewAdminClient(c.conns[via]).Drain(ctx, &hmv1.DrainRequest{Node: node, Drained: drained, Actor: "chaos/scenario"})
	return err
}
