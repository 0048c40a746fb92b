package agent

import (
	"context"
	"time"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"

	"github.com/harbormaster/harbormaster/fsm"
)

// SaveSnapshot implements the Admin service: the leader's committed state
// (after a barrier: every committed entry applied) as an fsm.Backup.
func (s *server) SaveSnapshot(ctx context.Context, req *hmv1.SaveSnapshotRequest) (*hmv1.SaveSnapshotResponse, error) {
	var resp *hmv1.SaveSnapshotResponse
	if done, err := s.onLeader(ctx, func(ctx context.Context, c hmv1.AdminClient) (err error) {
		resp, err = c.SaveSnapshot(ctx, req)
		return err
	}); done {
		return resp, err
	}
	if err := s.a.raft.Barrier(timeoutOf(ctx, 5*time.Second)).Error(); err != nil {
		return nil, grpcErr(err)
	}
	st := s.a.State()
	b := fsm.Backup{ClusterID: st.ClusterID, Index: st.Index, Term: s.a.raft.CurrentTerm(), TakenMs: time.Now().UnixMilli(),
		Node: s.a.cfg.NodeID, State: st}
	data, err := fsm.MarshalBackup(b)
	if err != nil {
		return nil, grpcErr(err)
	}
	s.a.log.Info("snapshot saved for an operator", "index", b.Index, "term", b.Term, "actor", actor(ctx, ""))
	return &hmv1.SaveSnapshotResponse{Snapshot: data, Index: b.Index, Term: b.Term, ClusterId: b.ClusterID, Node: b.Node}, nil
}
