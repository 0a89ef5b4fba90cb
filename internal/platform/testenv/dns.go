package testenv

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Zone is a small authoritative DNS server on loopback for tests: it
// answers SRV queries for the names given to Set, and NXDOMAIN otherwise.
type Zone struct {
	mu   sync.Mutex
	srv  map[string][]*dns.SRV
	addr string
}

// DNSZone starts a Zone on a free UDP port, stopped at the end of the test.
func DNSZone(tb testing.TB) *Zone {
	tb.Helper()
	z := &Zone{srv: map[string][]*dns.SRV{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	z.addr = pc.LocalAddr().String()
	s := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(z.serve)}
	go func() { _ = s.ActivateAndServe() }()
	tb.Cleanup(func() { _ = s.Shutdown() })
	return z
}

// Addr is the zone's host:port.
func (z *Zone) Addr() string { return z.addr }

// SetSRV makes name's SRV records point at the ports of addrs (host:port,
// on this machine: the target is "localhost", as an SRV target must be a
// host name), in order of preference; no addrs removes them.
func (z *Zone) SetSRV(name string, addrs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	var recs []*dns.SRV
	for i, a := range addrs {
		_, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		recs = append(recs, &dns.SRV{Priority: 10, Weight: uint16(1000 - i), Port: uint16(p), Target: "localhost."})
	}
	z.srv[dns.Fqdn(name)] = recs
}

// Resolver is a Go resolver that asks this zone.
func (z *Zone) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", z.addr)
	}}
}

func (z *Zone) serve(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	z.mu.Lock()
	if len(q.Question) == 1 && q.Question[0].Qtype == dns.TypeSRV {
		name := q.Question[0].Name
		for _, r := range z.srv[name] {
			rr := *r
			rr.Hdr = dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 1}
			m.Answer = append(m.Answer, &rr)
		}
	}
	z.mu.Unlock()
	if len(m.Answer) == 0 {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}
