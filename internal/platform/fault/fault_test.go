package fault_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/fault"
)

func TestRules(t *testing.T) {
	crashed := 0
	f := fault.New(func() { crashed++ })
	ctx := context.Background()
	if err := f.At(ctx, "before:x"); err != nil {
		t.Fatalf("no rules: %v", err)
	}
	if err := f.Set("before:a=fail*2, after:b=refuse, before:c=crash, service:payment=20ms, mid:d=crash*1"); err != nil {
		t.Fatal(err)
	}
	if got, want := f.String(), "after:b=refuse,before:a=fail*2,before:c=crash,mid:d=crash*1,service:payment=20ms"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for i := 0; i < 2; i++ {
		if err := f.At(ctx, "before:a"); !errs.Is(errs.Unavailable, err) {
			t.Fatalf("try %d: %v, want Unavailable", i, err)
		}
	}
	if err := f.At(ctx, "before:a"); err != nil {
		t.Errorf("after its count: %v", err)
	}
	if err := f.At(ctx, "after:b"); !errs.Is(errs.Conflict, err) {
		t.Errorf("refuse: %v", err)
	}
	if err := f.At(ctx, "before:c"); !errors.Is(err, fault.ErrCrashed) || crashed != 1 {
		t.Errorf("crash: %v, crashed %d", err, crashed)
	}
	// A crash counted once (a process restarted with the same rules
	// would crash again; a test's crash func returns): the second time
	// the point passes.
	if err := f.At(ctx, "mid:d"); !errors.Is(err, fault.ErrCrashed) || crashed != 2 {
		t.Errorf("mid crash: %v, crashed %d", err, crashed)
	}
	if err := f.At(ctx, "mid:d"); err != nil || crashed != 2 {
		t.Errorf("mid crash after its count: %v, crashed %d", err, crashed)
	}
	start := time.Now()
	if err := f.Delay(ctx, "payment"); err != nil || time.Since(start) < 20*time.Millisecond {
		t.Errorf("latency: %v after %v", err, time.Since(start))
	}
	if err := f.Delay(ctx, "order"); err != nil {
		t.Errorf("no latency for order: %v", err)
	}
	hctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_ = f.Set("before:h=hang")
	if err := f.At(hctx, "before:h"); !errs.Is(errs.Unavailable, err) {
		t.Errorf("hang: %v", err)
	}
	if err := f.Set(""); err != nil || f.String() != "" {
		t.Errorf("clear: %v %q", err, f.String())
	}
}

func TestDelayRule(t *testing.T) {
	f := fault.New(nil)
	if err := f.Set("before:handle=30ms*1"); err != nil {
		t.Fatal(err)
	}
	if got := f.String(); got != "before:handle=30ms*1" {
		t.Errorf("String = %q", got)
	}
	start := time.Now()
	if err := f.At(context.Background(), "before:handle"); err != nil || time.Since(start) < 30*time.Millisecond {
		t.Errorf("delay: %v after %s", err, time.Since(start))
	}
	start = time.Now()
	if err := f.At(context.Background(), "before:handle"); err != nil || time.Since(start) >= 30*time.Millisecond {
		t.Errorf("after its count: %v after %s", err, time.Since(start))
	}
	_ = f.Set("before:handle=1m")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.At(ctx, "before:handle"); !errs.Is(errs.Unavailable, err) {
		t.Errorf("delay past the deadline: %v", err)
	}
	for _, spec := range []string{"before:a=-1s", "before:a=2m"} {
		if err := f.Set(spec); !errs.Is(errs.Invalid, err) {
			t.Errorf("Set(%q) = %v, want Invalid", spec, err)
		}
	}
}

func TestBadRules(t *testing.T) {
	f := fault.New(nil)
	_ = f.Set("before:a=fail")
	for _, spec := range []string{"x", "before:a", "middle:a=fail", "before:a=explode", "before:a=fail*0", "service:p=forever", "service:=1s"} {
		if err := f.Set(spec); !errs.Is(errs.Invalid, err) {
			t.Errorf("Set(%q) = %v, want Invalid", spec, err)
		}
	}
	if f.String() != "before:a=fail" {
		t.Errorf("a refused spec changed the rules: %q", f.String())
	}
}
