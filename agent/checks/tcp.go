package checks

import (
	"context"
	"fmt"
	"net"
	"time"
)

// tcpProber is a tcp check: a connection opened within the timeout, then
// closed.
type tcpProber struct {
	addr    string
	timeout time.Duration
}

func (p *tcpProber) probe(ctx context.Context) (string, error) {
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return "", stageErr(ctx, p.timeout, "dial "+p.addr, unwrapOp(err))
	}
	out := fmt.Sprintf("connected to %s in %s", conn.RemoteAddr(), since(start))
	conn.Close()
	return out, nil
}

// unwrapOp drops the "dial tcp ADDR: " prefix of a *net.OpError, which the
// caller's stage already says.
func unwrapOp(err error) error {
	if oe, ok := err.(*net.OpError); ok && oe.Op == "dial" {
		return oe.Err
	}
	return err
}
