package netns_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/netns"
	"github.com/globomantics/globomantics/internal/platform/pgnode"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// echoEnv makes the test binary a TCP echo server on the given address
// instead of running the tests, so a test can start one in a host.
const echoEnv = "GLOBO_NETNS_TEST_ECHO"

func TestMain(m *testing.M) {
	if addr := os.Getenv(echoEnv); addr != "" {
		os.Exit(echoServer(addr))
	}
	os.Exit(m.Run())
}

func echoServer(addr string) int {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
	}
}

// need skips the test where namespaces cannot be made, unless services
// are required.
func need(t *testing.T) {
	t.Helper()
	if err := netns.Available(); err != nil {
		if testenv.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

func newNet(t *testing.T, hosts ...string) *netns.Net {
	t.Helper()
	prefix, err := netns.NewPrefix("gt")
	if err != nil {
		t.Fatal(err)
	}
	n, err := netns.New(t.Context(), prefix, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func rootDial(ctx context.Context, network, addr string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

// echo dials addr within a bounded time and checks that a line comes back.
func echo(dial dialFunc, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, "ping", 700*time.Millisecond)
}

func roundTrip(c net.Conn, line string, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return fmt.Errorf("echo: got %q", got)
	}
	return nil
}

// startEcho runs the test binary as an echo server in host on port 7000.
func startEcho(t *testing.T, n *netns.Net, host string) (addr string, cmd *exec.Cmd) {
	t.Helper()
	addr = net.JoinHostPort(n.Addr(host), "7000")
	cmd = n.Command(t.Context(), host, os.Args[0])
	cmd.Env = append(os.Environ(), echoEnv+"="+addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testenv.CheckFor(t, 10*time.Second, func() error { return echo(rootDial, addr) })
	return addr, cmd
}

func TestPartitionAndHeal(t *testing.T) {
	need(t)
	n := newNet(t, "a", "b", "c")
	addr, _ := startEcho(t, n, "a")
	fromB, fromC := n.Dialer("b"), n.Dialer("c")
	for name, dial := range map[string]dialFunc{"root": rootDial, "a": n.Dialer("a"), "b": fromB, "c": fromC} {
		if err := echo(dial, addr); err != nil {
			t.Fatalf("from %s before the partition: %v", name, err)
		}
	}
	open, err := fromB(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := roundTrip(open, "before", time.Second); err != nil {
		t.Fatal(err)
	}

	if err := n.Partition([]string{"b"}, []string{"a", "c"}); err != nil {
		t.Fatal(err)
	}
	if err := echo(fromB, addr); !isTimeout(err) {
		t.Fatalf("from b across the partition: got %v, want a timeout", err)
	}
	if err := roundTrip(open, "during", 700*time.Millisecond); !isTimeout(err) {
		t.Fatalf("open connection across the partition: got %v, want a timeout", err)
	}
	for name, dial := range map[string]dialFunc{"root": rootDial, "a": n.Dialer("a"), "c": fromC} {
		if err := echo(dial, addr); err != nil {
			t.Fatalf("from %s during the partition: %v", name, err)
		}
	}
	if err := echo(fromC, net.JoinHostPort(n.Addr("b"), "7000")); !isTimeout(err) {
		t.Fatalf("c to b during the partition: got %v, want a timeout", err)
	}

	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 5*time.Second, func() error { return echo(fromB, addr) })
	// The stalled connection delivers once TCP retransmits: "during" was
	// sent, so its echo comes back, and the connection goes on working.
	r := bufio.NewReader(open)
	_ = open.SetDeadline(time.Now().Add(20 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "during\n" {
		t.Fatalf("open connection after healing: %q, %v", got, err)
	}
}

func TestDisconnect(t *testing.T) {
	need(t)
	n := newNet(t, "a", "b")
	addr, _ := startEcho(t, n, "a")
	if err := n.Disconnect("a"); err != nil {
		t.Fatal(err)
	}
	for name, dial := range map[string]dialFunc{"root": rootDial, "b": n.Dialer("b")} {
		if err := echo(dial, addr); !isTimeout(err) {
			t.Fatalf("from %s to a disconnected host: got %v, want a timeout", name, err)
		}
	}
	if err := echo(n.Dialer("a"), addr); err != nil {
		t.Fatalf("a to itself while disconnected: %v", err)
	}
	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 5*time.Second, func() error { return echo(rootDial, addr) })
	testenv.CheckFor(t, 5*time.Second, func() error { return echo(n.Dialer("b"), addr) })
}

func TestCloseLeavesNothing(t *testing.T) {
	need(t)
	prefix, err := netns.NewPrefix("gt")
	if err != nil {
		t.Fatal(err)
	}
	n, err := netns.New(t.Context(), prefix, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	_, echoCmd := startEcho(t, n, "a")
	// A process the Net does not own, started with setns: Close kills it too.
	sleeper := exec.Command("sleep", "600")
	if err := n.Start("b", sleeper); err != nil {
		t.Fatal(err)
	}
	if err := n.Partition([]string{"a"}, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := echoCmd.Wait(); err == nil {
		t.Error("echo server exited cleanly, want killed")
	}
	if err := sleeper.Wait(); err == nil {
		t.Error("sleep exited cleanly, want killed")
	}
	assertGone(t, prefix)
	if err := n.Heal(); err == nil {
		t.Error("Heal after Close: want an error")
	}
}

func assertGone(t *testing.T, prefix string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err, string(out))
	}
	if strings.Contains(string(out), prefix+"-") {
		t.Errorf("namespaces left:\n%s", out)
	}
	out, err = exec.Command("ip", "-br", "link").CombinedOutput()
	if err != nil {
		t.Fatal(err, string(out))
	}
	if strings.Contains(string(out), prefix) {
		t.Errorf("links left:\n%s", out)
	}
}

func TestRemoveStale(t *testing.T) {
	need(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := "gt" + strconv.FormatInt(int64(dead.Process.Pid), 36) + "_zz"
	if _, err := netns.New(t.Context(), stale, "a", "b"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.Remove(context.Background(), stale) })
	live := newNet(t, "a")
	if _, err := netns.New(t.Context(), stale, "c"); err == nil {
		t.Fatal("New with a prefix in use: want an error")
	}

	removed, err := netns.RemoveStale(t.Context(), "gt")
	if err != nil {
		t.Fatal(err)
	}
	if !contains(removed, stale) || contains(removed, live.Prefix()) {
		t.Fatalf("removed %v, want %s and not %s", removed, stale, live.Prefix())
	}
	assertGone(t, stale)
	if err := echo(rootDial, net.JoinHostPort(live.Addr("a"), "1")); err == nil || isTimeout(err) {
		t.Fatalf("the live Net's host: got %v, want connection refused", err)
	}
}

func TestNewRefusesBadNames(t *testing.T) {
	need(t)
	for _, c := range []struct {
		prefix string
		hosts  []string
	}{
		{"has-dash", []string{"a"}},
		{"muchtoolongprefix", []string{"a"}},
		{"ok", nil},
		{"ok", []string{"sw"}},
		{"ok", []string{"a", "a"}},
		{"ok", []string{"Upper"}},
	} {
		if n, err := netns.New(t.Context(), c.prefix, c.hosts...); err == nil {
			n.Close()
			t.Errorf("New(%q, %q): want an error", c.prefix, c.hosts)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// TestPostgresAcrossHosts runs a PostgreSQL server in host a, listening on
// a's address only, and clients in host b and in the root namespace: b
// writes, the root reads; across a partition b cannot connect while the
// root still can, and after healing b can again.
func TestPostgresAcrossHosts(t *testing.T) {
	need(t)
	bin := pgnode.BinDir()
	if bin == "" {
		if testenv.Required() {
			t.Fatal("PostgreSQL binaries not installed")
		}
		t.Skip("PostgreSQL binaries not installed")
	}
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		t.Skip("no postgres user to run the server as")
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	dir, err := os.MkdirTemp("", "globo-netns-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	initdb.SysProcAttr, initdb.Dir = cred, dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v: %s", err, out)
	}

	n := newNet(t, "a", "b")
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(hba, "host all all %s trust\n", n.Subnet())
	hba.Close()

	server := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", "5432", "-k", dir,
		"-c", "listen_addresses="+n.Addr("a"), "-c", "fsync=off")
	server.SysProcAttr, server.Dir = cred, dir
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	server.Stdout, server.Stderr = logf, logf
	if err := n.Start("a", server); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Process.Signal(syscall.SIGINT); _ = server.Wait() })

	psql := func(host, sql string) (string, error) {
		conn := fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres connect_timeout=2", n.Addr("a"))
		args := []string{conn, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql}
		var cmd *exec.Cmd
		if host == "" {
			cmd = exec.CommandContext(t.Context(), filepath.Join(bin, "psql"), args...)
		} else {
			cmd = n.Command(t.Context(), host, filepath.Join(bin, "psql"), args...)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("psql from %q: %v: %s", host, err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	testenv.CheckFor(t, 20*time.Second, func() error { _, err := psql("", "SELECT 1"); return err })

	got, err := psql("b", "CREATE TABLE t (v text); INSERT INTO t VALUES ('from b'); SELECT inet_client_addr()")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got, n.Addr("b")) {
		t.Fatalf("client address seen by the server: %q, want %s", got, n.Addr("b"))
	}
	if got, err := psql("", "SELECT v FROM t"); err != nil || got != "from b" {
		t.Fatalf("read from the root: %q, %v", got, err)
	}

	if err := n.Partition([]string{"a"}, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := psql("b", "SELECT 1"); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("psql from b across the partition: %v, want a connection timeout", err)
	}
	t.Logf("b gave up after %v", time.Since(start).Round(10*time.Millisecond))
	if _, err := psql("", "INSERT INTO t VALUES ('from root')"); err != nil {
		t.Fatalf("root during the partition: %v", err)
	}
	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	got, err = psql("b", "SELECT count(*) FROM t")
	if err != nil || got != "2" {
		t.Fatalf("b after healing: %q, %v", got, err)
	}
}

func TestOpenAttaches(t *testing.T) {
	need(t)
	n := newNet(t, "shop1", "shop2", "monitor")
	addr, _ := startEcho(t, n, "shop1")
	o, err := netns.Open(t.Context(), n.Prefix())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(o.Hosts()) != fmt.Sprint(n.Hosts()) || o.Subnet() != n.Subnet() || o.Addr("monitor") != n.Addr("monitor") {
		t.Fatalf("Open: hosts %v subnet %s monitor %s, want %v %s %s", o.Hosts(), o.Subnet(), o.Addr("monitor"), n.Hosts(), n.Subnet(), n.Addr("monitor"))
	}
	if err := o.Partition([]string{"shop1", "monitor"}, []string{"shop2"}); err != nil {
		t.Fatal(err)
	}
	if err := echo(n.Dialer("shop2"), addr); !isTimeout(err) {
		t.Fatalf("shop2 to shop1 across the partition: got %v, want a timeout", err)
	}
	if err := echo(n.Dialer("monitor"), addr); err != nil {
		t.Fatalf("monitor to shop1, same side: %v", err)
	}
	if err := o.Heal(); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 5*time.Second, func() error { return echo(n.Dialer("shop2"), addr) })
	if _, err := netns.Open(t.Context(), "gtnosuch_zz"); err == nil {
		t.Fatal("Open of a Net that does not exist: want an error")
	}
}
