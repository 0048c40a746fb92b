package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/fsm"
)

// Cluster identity (docs/operations.md, Membership). The first leader
// commits a random cluster id (fsm.SetClusterID); every node keeps it in
// its data dir (clusterIDFile) and says it in the hello that opens every
// Raft connection, so two histories never mix. A node with an empty data
// dir bootstraps only when every bootstrap peer answers and none holds
// any Raft state: otherwise it waits, or joins the history the others hold.

const clusterIDFile = "cluster-id"

func newClusterID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random bytes for a cluster id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// readClusterID returns the id kept in the data dir ("" if none yet).
func readClusterID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, clusterIDFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if !fsm.ValidClusterID(id) {
		return "", fmt.Errorf("%s: %q is not a cluster id; restore the file or remove it (the node then learns the id from the cluster)", filepath.Join(dir, clusterIDFile), id)
	}
	return id, nil
}

func writeClusterID(dir, id string) error {
	p := filepath.Join(dir, clusterIDFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// localHello is what this node says when a Raft connection opens.
func (a *Agent) localHello() hello {
	h := hello{hasState: a.startedWithState.Load()}
	if st, _ := a.fsm.State(); st.Index > 0 {
		h.hasState = true
	}
	if id := a.clusterID.Load(); id != nil {
		h.clusterID = *id
	}
	return h
}

// clusterIDLoop keeps the data dir's cluster id in step with the
// replicated state: written once the id is committed (or learnt from the
// leader's log). A state whose id differs from the file's means the data
// dir holds another history than the log: the node stops.
func (a *Agent) clusterIDLoop(ctx context.Context) error {
	for {
		st, changed := a.fsm.State()
		if st.ClusterID != "" {
			cur := a.clusterID.Load()
			switch {
			case cur == nil || *cur == "":
				if !a.opts.InmemStore {
					if err := writeClusterID(a.cfg.DataDir, st.ClusterID); err != nil {
						return fmt.Errorf("write the cluster id into %s: %w", a.cfg.DataDir, err)
					}
				}
				id := st.ClusterID
				a.clusterID.Store(&id)
				a.log.Info("cluster id", "cluster_id", id)
			case *cur != st.ClusterID:
				return fmt.Errorf("the log names cluster %s but %s holds %s: this data dir mixes two histories; restore it or empty it and let the node join", st.ClusterID, filepath.Join(a.cfg.DataDir, clusterIDFile), *cur)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// awaitBootstrapPeers decides whether a node with no Raft state may
// bootstrap its bootstrap list: only when every other listed peer answers
// a probe and none holds state. While one does not answer, it waits and
// says so; when one holds state, the node joins that history instead
// (returns false) and is caught up by its leader.
func (a *Agent) awaitBootstrapPeers(ctx context.Context, stream *tlsStream) (bool, error) {
	pending := map[string]string{}
	for _, p := range a.cfg.Bootstrap {
		if p.ID != a.cfg.NodeID {
			pending[p.ID] = p.RaftAddr
		}
	}
	said := map[string]bool{}
	for len(pending) > 0 {
		for id, addr := range pending {
			h, err := stream.probe(addr, time.Second)
			if errors.Is(err, ErrOtherHistory) {
				return false, err
			}
			if err != nil {
				if !said[id] {
					a.log.Warn("waiting for a bootstrap peer before bootstrapping: this node has no Raft state, and bootstraps only when every peer answers and none has any (a peer holding the cluster's history must not be overwritten); to start a new cluster anyway, use --bootstrap-new-cluster",
						"peer", id, "raft_addr", addr, "err", err)
					said[id] = true
				}
				continue
			}
			if h.hasState {
				a.log.Info("joining the existing cluster instead of bootstrapping: a bootstrap peer holds its history", "peer", id, "cluster_id", h.clusterID)
				return false, nil
			}
			delete(pending, id)
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return true, nil
}

// clusterIDKey carries the caller's cluster id on agent-to-agent calls.
const clusterIDKey = "x-harbormaster-cluster-id"

func (a *Agent) currentClusterID() string {
	if id := a.clusterID.Load(); id != nil {
		return *id
	}
	return ""
}

func withClusterID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, clusterIDKey, id)
}

// checkClusterID refuses a call from a member of another history.
func (a *Agent) checkClusterID(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(clusterIDKey)
	self := a.currentClusterID()
	if len(v) == 0 || self == "" || v[0] == self {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "the caller belongs to cluster %s, this node to %s", v[0], self)
}
