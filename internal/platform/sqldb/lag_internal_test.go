package sqldb

import (
	"errors"
	"log/slog"
	"testing"
	"time"
)

// fakeCluster is a cluster with a primary and one replica and no servers,
// driven by hand-made probe results and a hand-moved clock.
func fakeCluster(now *time.Time) (*cluster, *node, *node) {
	opts := Options{Now: func() time.Time { return *now }, Log: slog.New(slog.DiscardHandler)}
	opts.defaults()
	c := &cluster{source: "x", opts: opts, log: opts.Log}
	c.epoch.Store(newEpoch())
	c.view.Store(&view{})
	p := &node{addr: "p:1", role: RoleUnknown, state: StateDown}
	r := &node{addr: "r:1", role: RoleUnknown, state: StateDown}
	c.nodes = []*node{p, r}
	return c, p, r
}

func TestLagRule(t *testing.T) {
	now := time.Unix(1000, 0)
	c, p, r := fakeCluster(&now)
	tick := func(d time.Duration, primaryLSN, replicaLSN uint64) {
		now = now.Add(d)
		c.update(p, probeResult{role: RolePrimary, lsn: primaryLSN}, nil)
		c.update(r, probeResult{role: RoleReplica, lsn: replicaLSN}, nil)
	}
	inRotation := func() bool { return len(c.view.Load().replicas) == 1 }

	tick(0, 100, 100)
	if !inRotation() || c.view.Load().primary != p {
		t.Fatal("caught-up replica not in rotation")
	}
	// An idle primary: however much time passes, equal positions mean no lag.
	for i := 0; i < 100; i++ {
		tick(time.Second, 100, 100)
	}
	if !inRotation() || r.lag != 0 {
		t.Fatalf("idle cluster: lag %v, in rotation %v", r.lag, inRotation())
	}
	// A write after a long idle time: the lag counts from when the primary
	// was first seen past the replica, not from the replica's last replay.
	tick(250*time.Millisecond, 200, 100)
	if !inRotation() || r.lag != 0 || r.lagBytes != 100 {
		t.Fatalf("just behind: lag %v (%d bytes), in rotation %v", r.lag, r.lagBytes, inRotation())
	}
	tick(750*time.Millisecond, 300, 100)
	if !inRotation() || r.lag != 750*time.Millisecond {
		t.Fatalf("0.75 s behind: lag %v, in rotation %v", r.lag, inRotation())
	}
	tick(500*time.Millisecond, 400, 150) // still missing what the primary had 1.25 s ago
	if inRotation() || r.state != StateLagging || r.lag != 1250*time.Millisecond {
		t.Fatalf("1.25 s behind: lag %v, state %s", r.lag, r.state)
	}
	// Back only once well within the bound (half of it).
	tick(250*time.Millisecond, 400, 250) // missing what was first seen 0.75 s ago
	if inRotation() {
		t.Fatalf("0.75 s behind after lagging: back in rotation too early (lag %v)", r.lag)
	}
	tick(250*time.Millisecond, 400, 400)
	if !inRotation() || r.state != StateInRotation {
		t.Fatalf("caught up: state %s", r.state)
	}
	// A failed probe ejects; the next good one brings it back.
	now = now.Add(time.Second)
	if f := c.update(r, probeResult{}, errors.New("connection refused")); f != 1 || inRotation() || r.state != StateDown {
		t.Fatalf("failed probe: failures %d, state %s", f, r.state)
	}
	if c.backoff(1) != c.opts.ProbeInterval || c.backoff(3) != 4*c.opts.ProbeInterval || c.backoff(100) != 5*time.Second {
		t.Errorf("backoff: %v %v %v", c.backoff(1), c.backoff(3), c.backoff(100))
	}
	tick(0, 400, 400)
	if !inRotation() {
		t.Fatal("recovered replica not back in rotation")
	}
	// The primary goes down: no primary, the replica keeps serving what it has.
	c.update(p, probeResult{}, errors.New("connection refused"))
	if c.view.Load().primary != nil || !inRotation() {
		t.Fatal("primary down: want no primary and the caught-up replica in rotation")
	}
}

// A replica a little behind when the primary is lost stays in rotation for
// as long as there is no primary to measure it against: it was within the
// bound when last measured, no write can happen meanwhile, and browsing
// reads must go on through a failover.
func TestLagFrozenWithoutPrimary(t *testing.T) {
	now := time.Unix(1000, 0)
	c, p, r := fakeCluster(&now)
	c.update(p, probeResult{role: RolePrimary, lsn: 100}, nil)
	c.update(r, probeResult{role: RoleReplica, lsn: 100}, nil)
	now = now.Add(250 * time.Millisecond)
	c.update(p, probeResult{role: RolePrimary, lsn: 200}, nil)
	c.update(r, probeResult{role: RoleReplica, lsn: 150}, nil) // behind at the loss
	now = now.Add(250 * time.Millisecond)
	c.update(p, probeResult{}, errors.New("connection refused"))
	for i := 0; i < 40; i++ { // 10 s of failover
		now = now.Add(250 * time.Millisecond)
		c.update(p, probeResult{}, errors.New("connection refused"))
		c.update(r, probeResult{role: RoleReplica, lsn: 180}, nil)
		if len(c.view.Load().replicas) != 1 {
			t.Fatalf("after %v without a primary the replica left rotation (state %s, lag %v)", time.Duration(i+1)*250*time.Millisecond, r.state, r.lag)
		}
	}
	// It is promoted: it is the primary, and writes may go on.
	c.update(r, probeResult{role: RolePrimary, lsn: 180}, nil)
	if c.view.Load().primary != r {
		t.Fatal("promoted replica is not the primary")
	}
}
