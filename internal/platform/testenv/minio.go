package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIOBucket is an empty bucket of its own on a MinIO server.
type MinIOBucket struct {
	Endpoint  string // host:port of the S3 API (plain http)
	AccessKey string
	SecretKey string
	Bucket    string
}

// URL is the bucket as an s3:// store spec (see blob.ParseSpec), with the
// key prefix given, or none when prefix is "".
func (b MinIOBucket) URL(prefix string) string {
	q := url.Values{"tls": {"false"}, "region": {"us-east-1"}}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	u := url.URL{Scheme: "s3", User: url.UserPassword(b.AccessKey, b.SecretKey), Host: b.Endpoint, Path: "/" + b.Bucket, RawQuery: q.Encode()}
	return u.String()
}

// MinIO returns a new, empty bucket on the package's private MinIO server,
// starting the server on first use. Every call gets its own bucket, so tests
// sharing the server do not see each other's objects.
//
// The server runs from a temporary directory on free ports and lives as
// long as the test process: it is started with a parent-death signal, so it
// dies with the test binary however that ends, and the next start of a
// server sweeps the directories of servers whose test process is gone.
// Tests that need to stop a server use StartMinIO.
//
// It skips the test when the minio binary is not installed, unless Required.
func MinIO(tb testing.TB) MinIOBucket {
	tb.Helper()
	srv, err := startSharedMinIO()
	if err != nil {
		skipOrFailMinIO(tb, err)
	}
	return srv.NewBucket(tb)
}

// StartMinIO starts a MinIO server of the test's own, which the test may
// stop to see how its code copes with the object store going away. It is
// stopped, and its directory removed, when the test ends. It skips the test
// when the minio binary is not installed, unless Required.
func StartMinIO(tb testing.TB) *MinIOServer {
	tb.Helper()
	dir, err := minioDir()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	srv, err := launchMinIO(dir)
	if err != nil {
		skipOrFailMinIO(tb, err)
	}
	tb.Cleanup(srv.Stop)
	return srv
}

func skipOrFailMinIO(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, errNoMinIO) && !Required() {
		tb.Skip("minio not installed (go install github.com/minio/minio@" + MinIOVersion + ")")
	}
	tb.Fatalf("minio: %v", err)
}

// MinIOVersion is the version of github.com/minio/minio the tests were
// written against, as CI installs it.
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// MinIOServer is a running MinIO server.
type MinIOServer struct {
	Endpoint  string // host:port of the S3 API (plain http)
	AccessKey string
	SecretKey string

	client *minio.Client
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	once   sync.Once

	mu      sync.Mutex
	buckets int
}

// NewBucket creates a new, empty bucket on the server, named after the test.
func (s *MinIOServer) NewBucket(tb testing.TB) MinIOBucket {
	tb.Helper()
	s.mu.Lock()
	s.buckets++
	n := s.buckets
	s.mu.Unlock()
	name := bucketName(n, tb.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		tb.Fatalf("minio: create bucket %s: %v", name, err)
	}
	return MinIOBucket{Endpoint: s.Endpoint, AccessKey: s.AccessKey, SecretKey: s.SecretKey, Bucket: name}
}

// bucketName is a valid, unique S3 bucket name (3 to 63 characters of
// lower-case letters, digits and hyphens) that says which test made it.
func bucketName(n int, test string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "t%d-", n)
	for _, r := range strings.ToLower(test) {
		if b.Len() >= 60 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else if !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
	}
	return strings.TrimRight(b.String(), "-") + "-x"
}

// Stop stops the server and waits for it to exit; stopping a stopped
// server does nothing.
func (s *MinIOServer) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
}

var (
	minioShared struct {
		mu   sync.Mutex
		done bool
		srv  *MinIOServer
		err  error
	}

	errNoMinIO = errors.New("minio binary not found")
)

func startSharedMinIO() (*MinIOServer, error) {
	minioShared.mu.Lock()
	defer minioShared.mu.Unlock()
	if minioShared.done {
		return minioShared.srv, minioShared.err
	}
	minioShared.done = true
	dir, err := minioDir()
	if err != nil {
		minioShared.err = err
		return nil, err
	}
	minioShared.srv, minioShared.err = launchMinIO(dir)
	if minioShared.err != nil {
		os.RemoveAll(dir)
	}
	// testenv.Main has no hook to stop this server: it dies with the test
	// process (its parent-death signal), and its directory, named after
	// this process, is swept by the next test process that starts one.
	return minioShared.srv, minioShared.err
}

const minioDirPrefix = "globo-minio-"

// minioDir makes a directory for a server's data, named after this
// process, after removing those left by test processes that are gone.
func minioDir() (string, error) {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), minioDirPrefix+"*"))
	for _, d := range old {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), minioDirPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
	return os.MkdirTemp("", minioDirPrefix+strconv.Itoa(os.Getpid())+"-")
}

// MinIOBinary returns the path of the minio binary: on PATH, in $GOBIN,
// $GOPATH/bin or ~/go/bin (where go install puts it), or /usr/local/bin;
// "" if none.
func MinIOBinary() string {
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if d := os.Getenv("GOPATH"); d != "" {
		dirs = append(dirs, filepath.Join(d, "bin"))
	}
	if h, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(h, "go", "bin"))
	}
	dirs = append(dirs, "/usr/local/bin")
	for _, d := range dirs {
		p := filepath.Join(d, "minio")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// launchMinIO starts minio on data directory dir and waits until it
// answers S3 requests. A port taken between being picked and bound is
// retried with another.
func launchMinIO(dir string) (*MinIOServer, error) {
	bin := MinIOBinary()
	if bin == "" {
		return nil, errNoMinIO
	}
	return launchRetrying(func(try int) (*MinIOServer, bool, error) { return launchMinIOOnce(bin, dir, try) })
}

func launchMinIOOnce(bin, dir string, try int) (srv *MinIOServer, portInUse bool, err error) {
	port, err := FreePort()
	if err != nil {
		return nil, false, err
	}
	consolePort, err := FreePort()
	if err != nil {
		return nil, false, err
	}
	data := filepath.Join(dir, "data"+strconv.Itoa(try))
	logPath := filepath.Join(dir, "minio-"+strconv.Itoa(port)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, false, err
	}
	defer logf.Close() // the child has its own copy
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, false, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s := &MinIOServer{Endpoint: addr, AccessKey: "globo-test", SecretKey: hex.EncodeToString(secret), exited: make(chan struct{})}

	cmd := exec.Command(bin, "server", data,
		"--address", addr,
		"--console-address", "127.0.0.1:"+strconv.Itoa(consolePort),
		"--quiet", "--anonymous")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(minioEnviron(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", // no web console: faster start, less memory
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1", // no checks meant for production drives
		"HOME="+dir,     // its config (~/.minio) stays in the directory
	)
	// Die with the test process, however it ends (as PostgreSQL does).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, false, fmt.Errorf("start minio: %w", err)
	}
	s.cmd = cmd
	go func() { _ = cmd.Wait(); close(s.exited) }()

	s.client, err = minio.New(addr, &minio.Options{
		Creds:      credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:     "us-east-1",
		MaxRetries: 1,
	})
	if err != nil {
		s.Stop()
		return nil, false, err
	}
	hc := &http.Client{Timeout: time.Second}
	inUse, err := waitStarted("minio", logPath, s.exited, 30*time.Second, 50*time.Millisecond, func() error { return s.ready(hc) }, s.Stop)
	if err != nil {
		return nil, inUse, err
	}
	return s, false, nil
}

// ready checks that the server is live and answers an authenticated S3
// request.
func (s *MinIOServer) ready(hc *http.Client) error {
	resp, err := hc.Get("http://" + s.Endpoint + "/minio/health/live")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/minio/health/live: %s", resp.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = s.client.ListBuckets(ctx)
	return err
}

// minioEnviron is this process's environment without the MINIO_ settings
// a developer's shell may carry.
func minioEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	return env
}
