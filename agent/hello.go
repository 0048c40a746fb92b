package agent

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/harbormaster/harbormaster/fsm"
)

// hello opens every Raft connection, after TLS (transport.go): each side
// says which cluster history it belongs to and whether it holds any Raft
// state. Two nodes of different histories (a node whose data dir was wiped
// and that bootstrapped a new cluster, a restored backup of another
// cluster) refuse each other, so neither history overwrites or joins the
// other. A probe asks without opening a Raft connection: a node with an
// empty data dir probes its bootstrap peers before it bootstraps.
//
//	"HMH1" | flags u8 (1: probe, 2: has state) | len u8 | cluster id
type hello struct {
	probe    bool
	hasState bool
	// clusterID is "" while the node's history has none yet.
	clusterID string
}

const helloMagic = "HMH1"

func (h hello) marshal() []byte {
	b := []byte(helloMagic)
	var flags byte
	if h.probe {
		flags |= 1
	}
	if h.hasState {
		flags |= 2
	}
	b = append(b, flags, byte(len(h.clusterID)))
	return append(b, h.clusterID...)
}

func readHello(r io.Reader) (hello, error) {
	head := make([]byte, len(helloMagic)+2)
	if _, err := io.ReadFull(r, head); err != nil {
		return hello{}, fmt.Errorf("read hello: %w", err)
	}
	if string(head[:4]) != helloMagic {
		return hello{}, errors.New("the peer did not open with a harbormaster hello (an agent of another version?)")
	}
	h := hello{probe: head[4]&1 != 0, hasState: head[4]&2 != 0}
	if n := int(head[5]); n > 0 {
		id := make([]byte, n)
		if _, err := io.ReadFull(r, id); err != nil {
			return hello{}, fmt.Errorf("read hello: %w", err)
		}
		h.clusterID = string(id)
		if !fsm.ValidClusterID(h.clusterID) {
			return hello{}, fmt.Errorf("hello: %q is not a cluster id", h.clusterID)
		}
	}
	return h, nil
}

// ErrOtherHistory says a peer belongs to another cluster history.
var ErrOtherHistory = errors.New("the peer belongs to another cluster history")

// compatible refuses two known, different cluster ids.
func compatible(self, peer hello) error {
	if self.clusterID != "" && peer.clusterID != "" && self.clusterID != peer.clusterID {
		return fmt.Errorf("%w: this node is of cluster %s, the peer of %s; a node whose data dir was wiped must not bootstrap a new cluster (see docs/operations.md, Membership)",
			ErrOtherHistory, self.clusterID, peer.clusterID)
	}
	return nil
}

// sendHello is the dialer's side: it speaks first, then reads the answer.
func sendHello(c net.Conn, self hello) (hello, error) {
	if _, err := c.Write(self.marshal()); err != nil {
		return hello{}, fmt.Errorf("send hello: %w", err)
	}
	peer, err := readHello(c)
	if err != nil {
		return hello{}, err
	}
	return peer, compatible(self, peer)
}

// answerHello is the acceptor's side: it reads the peer's hello, answers
// with its own (also to a peer it then refuses, so the peer can say why).
func answerHello(c net.Conn, self hello) (hello, error) {
	peer, err := readHello(c)
	if err != nil {
		return hello{}, err
	}
	if _, err := c.Write(self.marshal()); err != nil {
		return peer, fmt.Errorf("answer hello: %w", err)
	}
	return peer, compatible(self, peer)
}
