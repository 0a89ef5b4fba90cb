// Package freeport picks TCP ports on 127.0.0.1 for servers that are told
// their port before they start (test servers, development clusters).
//
// A port the kernel hands out for ":0" comes from the ephemeral range, which
// the kernel also uses for the local end of outgoing connections: between
// picking such a port and binding it, a busy machine's next outgoing
// connection can take it. Ports are therefore picked at random below the
// ephemeral range, where only servers bind.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// low is the lowest port picked; the highest is just below the ephemeral
// range (32768 on Linux by default).
const low = 15000

// Get returns a TCP port on 127.0.0.1 that was free a moment ago, outside
// the kernel's ephemeral port range when it can find one.
func Get() (int, error) {
	high := ephemeralLow() - 1
	if high-low >= 1000 {
		for range 100 {
			p := low + rand.IntN(high-low+1)
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err == nil {
				l.Close()
				return p, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > low {
				return n
			}
		}
	}
	return 32768
}
