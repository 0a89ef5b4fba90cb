// Package netns makes several "machines" on one Linux machine: each host is
// a network namespace with an address of its own on a private /24, joined to
// the others by veth pairs on a bridge that lives in a namespace of its own,
// so that a partition can be made between hosts and healed again.
//
// The layout of a Net with prefix P and hosts a, b:
//
//	root namespace            P-sw (switch)             P-a, P-b (hosts)
//	P-r 10.201.X.1/24 <-veth-> root ─┐
//	                                 br0
//	eth0 10.201.X.2/24 <-veth-> p0 ──┤   (eth0 lives in P-a)
//	eth0 10.201.X.3/24 <-veth-> p1 ──┘   (eth0 lives in P-b)
//
// The root namespace (tests, the supervisor) reaches every host through P-r;
// the machine's own interfaces and routes are never changed beyond that one
// veth and its connected /24, and the root namespace does not route between
// hosts (they have no route but their /24). Each host's loopback is its own.
//
// It needs root and iproute2's ip; nothing else (no iptables, nftables or
// tc). Everything is deleted by Close, or by Remove and RemoveStale after a
// crash.
package netns

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// nsDir is where ip netns keeps its named namespaces.
const nsDir = "/run/netns"

// cutMAC is the link-layer address a partition gives the other side's
// addresses: a locally administered unicast address no interface has, so
// frames sent to it are dropped silently, as on a cut network.
const cutMAC = "02:00:00:00:00:01"

// Net is a set of network-namespace hosts on one bridge. Its methods are
// safe for concurrent use.
type Net struct {
	prefix string
	ip     string // path of the ip binary
	subnet [3]byte
	hosts  []string

	mu     sync.Mutex
	cut    map[string]bool // hosts holding partition entries
	down   map[string]bool // hosts whose switch port is down
	closed bool
}

// Available reports whether this process can make namespaces: it runs as
// root on Linux and ip is installed. The error says what is missing.
func Available() error {
	if runtime.GOOS != "linux" {
		return errors.New("netns: needs Linux")
	}
	if os.Geteuid() != 0 {
		return errors.New("netns: needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("netns: ip not found (install the Debian package iproute2)")
	}
	return nil
}

// NewPrefix returns a prefix for New that no other live process uses: base
// (1 to 4 lowercase letters), this process's pid in base 36, "_" and two
// random characters. RemoveStale(base) recognises it once the process is
// gone.
func NewPrefix(base string) (string, error) {
	if err := checkBase(base); err != nil {
		return "", err
	}
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	return base + strconv.FormatInt(int64(os.Getpid()), 36) + "_" + string(digits[b[0]%36]) + string(digits[b[1]%36]), nil
}

func checkBase(base string) error {
	if len(base) < 1 || len(base) > 4 || strings.IndexFunc(base, func(r rune) bool { return r < 'a' || r > 'z' }) >= 0 {
		return fmt.Errorf("netns: base %q: want 1 to 4 letters a-z", base)
	}
	return nil
}

func checkPrefix(prefix string) error {
	if len(prefix) < 1 || len(prefix) > 12 || strings.IndexFunc(prefix, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
	}) >= 0 {
		return fmt.Errorf("netns: prefix %q: want 1 to 12 characters of a-z, 0-9 and _", prefix)
	}
	return nil
}

func checkHost(host string) error {
	if host == "sw" || len(host) < 1 || len(host) > 32 || host[0] == '-' || strings.IndexFunc(host, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-')
	}) >= 0 {
		return fmt.Errorf("netns: host %q: want 1 to 32 characters of a-z, 0-9 and - (not leading), and not \"sw\"", host)
	}
	return nil
}

// New makes the namespaces "<prefix>-sw" (the bridge) and "<prefix>-<host>"
// for each host, each host with loopback up and the address Addr(host) on
// its eth0, and the veth "<prefix>-r" in the root namespace with RootAddr.
// The /24 is the first free one of 10.201.0.0/16 (no address or route of
// the machine in it) starting from one derived from prefix. prefix is 1 to
// 12 characters of a-z, 0-9 and _ (see NewPrefix); it fails if a Net with
// the same prefix exists. On error nothing is left behind.
func New(ctx context.Context, prefix string, hosts ...string) (*Net, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	if len(hosts) == 0 || len(hosts) > 250 {
		return nil, fmt.Errorf("netns: %d hosts, want 1 to 250", len(hosts))
	}
	for i, h := range hosts {
		if err := checkHost(h); err != nil {
			return nil, err
		}
		if slices.Contains(hosts[:i], h) {
			return nil, fmt.Errorf("netns: host %q given twice", h)
		}
	}
	ipPath, _ := exec.LookPath("ip")
	n := &Net{prefix: prefix, ip: ipPath, hosts: slices.Clone(hosts), cut: map[string]bool{}, down: map[string]bool{}}
	if exists(n.ns("sw")) {
		return nil, fmt.Errorf("netns: %s exists already (Remove it first)", n.ns("sw"))
	}
	if err := n.build(ctx); err != nil {
		if rerr := Remove(context.WithoutCancel(ctx), prefix); rerr != nil {
			err = fmt.Errorf("%w (and removing what was made: %v)", err, rerr)
		}
		return nil, err
	}
	return n, nil
}

// Open attaches to a Net that New made with this prefix, in this process or
// another (a command that partitions or heals the running fleet): the same
// hosts in the same order, the same addresses. Its Heal undoes every
// partition and disconnection whoever made them. Closing it removes the
// Net.
func Open(ctx context.Context, prefix string) (*Net, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	ipPath, _ := exec.LookPath("ip")
	n := &Net{prefix: prefix, ip: ipPath, cut: map[string]bool{}, down: map[string]bool{}}
	if !exists(n.ns("sw")) {
		return nil, fmt.Errorf("netns: no Net %q", prefix)
	}
	names, err := namespaces()
	if err != nil {
		return nil, err
	}
	byLast := map[int]string{}
	for _, name := range names {
		p, host, ok := strings.Cut(name, "-")
		if !ok || p != prefix || host == "sw" {
			continue
		}
		out, err := n.output(ctx, "-n", name, "-4", "-o", "addr", "show", "dev", "eth0")
		if err != nil {
			return nil, err
		}
		f := strings.Fields(out) // "2: eth0 inet 10.201.7.2/24 brd ..."
		i := slices.Index(f, "inet")
		if i < 0 || i+1 >= len(f) {
			return nil, fmt.Errorf("netns: %s has no address", name)
		}
		ip, _, err := net.ParseCIDR(f[i+1])
		if err != nil || ip.To4() == nil {
			return nil, fmt.Errorf("netns: %s: address %q", name, f[i+1])
		}
		ip4 := ip.To4()
		n.subnet = [3]byte{ip4[0], ip4[1], ip4[2]}
		byLast[int(ip4[3])] = host
	}
	for last := 2; len(n.hosts) < len(byLast); last++ {
		h, ok := byLast[last]
		if !ok {
			return nil, fmt.Errorf("netns: Net %q is incomplete (no host at .%d)", prefix, last)
		}
		n.hosts = append(n.hosts, h)
	}
	if len(n.hosts) == 0 {
		return nil, fmt.Errorf("netns: Net %q has no hosts", prefix)
	}
	for _, h := range n.hosts {
		n.cut[h], n.down[h] = true, true
	}
	return n, nil
}

func (n *Net) build(ctx context.Context) error {
	sw := n.ns("sw")
	if err := n.run(ctx, "netns", "add", sw); err != nil {
		return err
	}
	if err := n.runAll(ctx,
		[]string{"-n", sw, "link", "set", "dev", "lo", "up"},
		[]string{"-n", sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		[]string{"-n", sw, "link", "set", "dev", "br0", "up"},
	); err != nil {
		return err
	}
	if err := n.addRoot(ctx); err != nil {
		return err
	}
	for i, h := range n.hosts {
		ns, port := n.ns(h), "p"+strconv.Itoa(i)
		if err := n.run(ctx, "netns", "add", ns); err != nil {
			return err
		}
		if err := n.runAll(ctx,
			[]string{"-n", ns, "link", "set", "dev", "lo", "up"},
			[]string{"-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", sw},
			[]string{"-n", sw, "link", "set", "dev", port, "master", "br0", "up"},
			[]string{"-n", ns, "addr", "add", n.Addr(h) + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "dev", "eth0", "up"},
		); err != nil {
			return err
		}
	}
	return nil
}

// addRoot picks the /24 and gives the root namespace its veth, under a lock
// shared by every process so that two Nets made at once differ.
func (n *Net) addRoot(ctx context.Context) error {
	unlock, err := lockFile("/run/globo-netns.lock")
	if err != nil {
		return err
	}
	defer unlock()
	used, err := usedSubnets()
	if err != nil {
		return err
	}
	h := fnv.New32a()
	h.Write([]byte(n.prefix))
	start := int(h.Sum32() % 250)
	x := -1
	for i := range 250 {
		c := (start+i)%250 + 1
		if !used[c] {
			x = c
			break
		}
	}
	if x < 0 {
		return errors.New("netns: no free /24 in 10.201.0.0/16")
	}
	n.subnet = [3]byte{10, 201, byte(x)}
	root := n.rootLink()
	return n.runAll(ctx,
		[]string{"link", "add", root, "type", "veth", "peer", "name", "root", "netns", n.ns("sw")},
		[]string{"-n", n.ns("sw"), "link", "set", "dev", "root", "master", "br0", "up"},
		[]string{"addr", "add", n.RootAddr() + "/24", "dev", root},
		[]string{"link", "set", "dev", root, "up"},
	)
}

// usedSubnets returns the third octets of the /24s of 10.201.0.0/16 that an
// address or a route of the root namespace overlaps.
func usedSubnets() (map[int]bool, error) {
	used := map[int]bool{}
	mark := func(dst, mask uint32) {
		for x := 1; x <= 250; x++ {
			c := uint32(10)<<24 | 201<<16 | uint32(x)<<8
			m := mask & 0xffffff00
			if c&m == dst&m {
				used[x] = true
			}
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip4 := ipn.IP.To4(); ip4 != nil {
				mark(binary.BigEndian.Uint32(ip4), binary.BigEndian.Uint32(net.IP(ipn.Mask).To4()))
			}
		}
	}
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		dst, err1 := hex.DecodeString(f[1])
		mask, err2 := hex.DecodeString(f[7])
		if err1 != nil || err2 != nil || len(dst) != 4 || len(mask) != 4 {
			continue
		}
		if m := binary.LittleEndian.Uint32(mask); m != 0 { // the default route overlaps everything
			mark(binary.LittleEndian.Uint32(dst), m)
		}
	}
	return used, nil
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// Prefix is the prefix the Net's namespaces and root veth are named by.
func (n *Net) Prefix() string { return n.prefix }

// Hosts lists the hosts in the order given to New.
func (n *Net) Hosts() []string { return slices.Clone(n.hosts) }

// Subnet is the Net's /24, as "10.201.X.0/24".
func (n *Net) Subnet() string {
	return fmt.Sprintf("%d.%d.%d.0/24", n.subnet[0], n.subnet[1], n.subnet[2])
}

// RootAddr is the root namespace's address on the Net: what a process in a
// host dials to reach a server in the root namespace (which must listen on
// it or on all addresses).
func (n *Net) RootAddr() string { return n.addr(1) }

// Addr is the host's IPv4 address, or "" for a host the Net does not have.
func (n *Net) Addr(host string) string {
	i := slices.Index(n.hosts, host)
	if i < 0 {
		return ""
	}
	return n.addr(i + 2)
}

func (n *Net) addr(last int) string {
	return fmt.Sprintf("%d.%d.%d.%d", n.subnet[0], n.subnet[1], n.subnet[2], last)
}

// Namespace is the name of the host's namespace (for ip netns exec), or ""
// for a host the Net does not have.
func (n *Net) Namespace(host string) string {
	if !slices.Contains(n.hosts, host) {
		return ""
	}
	return n.ns(host)
}

func (n *Net) ns(host string) string { return n.prefix + "-" + host }
func (n *Net) rootLink() string      { return n.prefix + "-r" }

// Wrap returns argv prefixed so that it runs in the host's namespace (ip
// netns exec NS argv...): the program is exec'd in place, so its pid is the
// one the caller started. The process must keep root's privileges until
// then: for a command with SysProcAttr.Credential use Start instead.
func (n *Net) Wrap(host string, argv ...string) ([]string, error) {
	if !slices.Contains(n.hosts, host) {
		return nil, fmt.Errorf("netns: no host %q", host)
	}
	return append([]string{n.ip, "netns", "exec", n.ns(host)}, argv...), nil
}

// Command is exec.CommandContext for a program run in the host's
// namespace through ip netns exec (see Wrap). For an unknown host the
// command's Start fails.
func (n *Net) Command(ctx context.Context, host, name string, args ...string) *exec.Cmd {
	argv, err := n.Wrap(host, append([]string{name}, args...)...)
	if err != nil {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Err = err
		return cmd
	}
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

// Start starts cmd, built as usual (any SysProcAttr, Credential included),
// in the host's namespace: the child is forked from an OS thread switched
// into the namespace for the call. Note that SysProcAttr.Pdeathsig fires
// when that thread exits, which it does only if switching back failed.
func (n *Net) Start(host string, cmd *exec.Cmd) error {
	return n.Do(host, cmd.Start)
}

// Dialer returns a dial function (for net/http's Transport.DialContext, a
// database driver's dialer, ...) whose connections are made from inside the
// host's namespace, as a client on that host would make them. Give it
// addresses, not names.
func (n *Net) Dialer(host string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := n.Do(host, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Listen opens a listener in the host's namespace, so a server in this
// process serves as if it ran on that host.
func (n *Net) Listen(host, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(host, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// Do calls fn on an OS thread switched into the host's network namespace;
// sockets fn opens stay in that namespace. fn must not start goroutines
// that open sockets (they run on other threads). The thread is switched
// back afterwards, or discarded if that fails.
func (n *Net) Do(host string, fn func() error) error {
	if !slices.Contains(n.hosts, host) {
		return fmt.Errorf("netns: no host %q", host)
	}
	target, err := os.Open(filepath.Join(nsDir, n.ns(host)))
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: setns %s: %w", n.ns(host), err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it ends with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("netns: switching back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Partition cuts every host of a from every host of b, both ways, until
// Heal: packets between them are dropped silently (connections time out as
// on a cut network; open ones stall and resume after Heal if they have not
// timed out). Hosts on one side keep reaching each other, hosts in neither
// list are untouched, and the root namespace keeps reaching everyone.
// Partitions add up. It is done with permanent neighbour entries pointing
// the other side's addresses at a MAC no one has.
func (n *Net) Partition(a, b []string) error {
	for _, h := range append(slices.Clone(a), b...) {
		if !slices.Contains(n.hosts, h) {
			return fmt.Errorf("netns: no host %q", h)
		}
	}
	for _, h := range a {
		if slices.Contains(b, h) {
			return fmt.Errorf("netns: host %q on both sides", h)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("netns: closed")
	}
	ctx := context.Background()
	cut := func(from, to string) error {
		n.cut[from] = true
		return n.run(ctx, "-n", n.ns(from), "neigh", "replace", n.Addr(to), "lladdr", cutMAC, "dev", "eth0", "nud", "permanent")
	}
	for _, x := range a {
		for _, y := range b {
			if err := errors.Join(cut(x, y), cut(y, x)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Disconnect takes the host off the network, as if its cable were pulled:
// it reaches no one and no one reaches it, the root namespace included,
// until Heal. Its processes keep running and its loopback keeps working.
func (n *Net) Disconnect(host string) error {
	i := slices.Index(n.hosts, host)
	if i < 0 {
		return fmt.Errorf("netns: no host %q", host)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("netns: closed")
	}
	n.down[host] = true
	return n.run(context.Background(), "-n", n.ns("sw"), "link", "set", "dev", "p"+strconv.Itoa(i), "down")
}

// Heal undoes every Partition and Disconnect: traffic flows again at once
// (after a fresh address resolution, well under a second).
func (n *Net) Heal() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("netns: closed")
	}
	ctx := context.Background()
	var errs []error
	for i, h := range n.hosts {
		if n.down[h] {
			if err := n.run(ctx, "-n", n.ns("sw"), "link", "set", "dev", "p"+strconv.Itoa(i), "up"); err != nil {
				errs = append(errs, err)
				continue
			}
			delete(n.down, h)
		}
		if n.cut[h] {
			if err := n.run(ctx, "-n", n.ns(h), "neigh", "flush", "dev", "eth0", "nud", "permanent"); err != nil {
				errs = append(errs, err)
				continue
			}
			delete(n.cut, h)
		}
	}
	return errors.Join(errs...)
}

// Close kills every process left in the Net's namespaces and deletes the
// namespaces and the root veth. It may be called more than once, and works
// after the processes died or were killed by someone else.
func (n *Net) Close() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	return Remove(context.Background(), n.prefix)
}

// Remove deletes what New made with this prefix, whether or not a Net value
// for it exists (after a crash, from another process): it kills the
// processes in its namespaces, deletes the namespaces and the root veth,
// and waits until they are gone. Nothing there is no error.
func Remove(ctx context.Context, prefix string) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		return errors.New("netns: ip not found (install the Debian package iproute2)")
	}
	n := &Net{prefix: prefix, ip: ipPath}
	names, err := namespaces()
	if err != nil {
		return err
	}
	var mine []string
	for _, name := range names {
		if p, _, ok := strings.Cut(name, "-"); ok && p == prefix {
			mine = append(mine, name)
		}
	}
	var errs []error
	for _, ns := range mine {
		errs = append(errs, n.killAll(ctx, ns))
	}
	if _, err := net.InterfaceByName(n.rootLink()); err == nil {
		if err := n.run(ctx, "link", "del", "dev", n.rootLink()); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	for _, ns := range mine {
		if err := n.run(ctx, "netns", "del", ns); err != nil && exists(ns) {
			errs = append(errs, err)
		}
	}
	// Deleting a namespace frees its interfaces in the background; wait
	// for the root veth to be gone so that a caller sees a clean machine.
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, err := net.InterfaceByName(n.rootLink())
		if err != nil || time.Now().After(deadline) {
			if err == nil {
				errs = append(errs, fmt.Errorf("netns: %s still present", n.rootLink()))
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.Join(errs...)
}

// killAll sends SIGKILL to every process in the namespace and waits until
// none is left (they may be zombies of this process: the wait is for them
// to leave the namespace, which they do when they exit).
func (n *Net) killAll(ctx context.Context, ns string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := n.output(ctx, "netns", "pids", ns)
		if err != nil {
			if !exists(ns) {
				return nil
			}
			return err
		}
		pids := strings.Fields(out)
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns: processes %v still in %s", pids, ns)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RemoveStale removes the Nets whose prefixes NewPrefix(base) made in
// processes that no longer run (a test or supervisor that crashed), and
// leaves the others alone. It returns the prefixes it removed.
func RemoveStale(ctx context.Context, base string) ([]string, error) {
	if err := checkBase(base); err != nil {
		return nil, err
	}
	names, err := namespaces()
	if err != nil {
		return nil, err
	}
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if p, ok := strings.CutSuffix(ifc.Name, "-r"); ok {
			names = append(names, p+"-r")
		}
	}
	var stale []string
	for _, name := range names {
		p, _, _ := strings.Cut(name, "-")
		if slices.Contains(stale, p) {
			continue
		}
		if pid, ok := ownerPid(base, p); ok && !alive(pid) {
			stale = append(stale, p)
		}
	}
	var errs []error
	for _, p := range stale {
		errs = append(errs, Remove(ctx, p))
	}
	return stale, errors.Join(errs...)
}

// ownerPid parses a prefix made by NewPrefix(base).
func ownerPid(base, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(prefix, base)
	if !ok {
		return 0, false
	}
	pid36, rnd, ok := strings.Cut(rest, "_")
	if !ok || len(rnd) != 2 || checkPrefix(prefix) != nil {
		return 0, false
	}
	pid, err := strconv.ParseInt(pid36, 36, 32)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return int(pid), true
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// namespaces lists the named network namespaces.
func namespaces() ([]string, error) {
	ents, err := os.ReadDir(nsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

func exists(ns string) bool {
	_, err := os.Stat(filepath.Join(nsDir, ns))
	return err == nil
}

func (n *Net) run(ctx context.Context, args ...string) error {
	_, err := n.output(ctx, args...)
	return err
}

func (n *Net) runAll(ctx context.Context, cmds ...[]string) error {
	for _, args := range cmds {
		if err := n.run(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

func (n *Net) output(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, n.ip, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("netns: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
