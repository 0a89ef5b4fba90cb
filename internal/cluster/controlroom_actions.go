package cluster

// The fault knobs: POST forms that kill a process or set the checkout's
// fault rules.

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/fault"
)

var (
	crServiceName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,30}$`)
	crStepName    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)
)

func (c *ControlRoom) serveAction(w http.ResponseWriter, r *http.Request) {
	if err := c.cop.Check(r); err != nil {
		c.fail(w, errs.E(errs.Forbidden, errs.Msg("cross-origin request refused")))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		c.fail(w, errs.E(errs.BadRequest, errs.Msg("unreadable form")))
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(c.csrf)) != 1 {
		c.fail(w, errs.E(errs.Forbidden, errs.Msg("missing or stale form token: reload the page and try again")))
		return
	}
	var msg string
	var err error
	switch r.PathValue("action") {
	case "kill":
		msg, err = c.kill(r.PostForm.Get("name"))
	case "latency":
		msg, err = c.latency(r.Context(), r.PostForm.Get("service"), r.PostForm.Get("delay"))
	case "step":
		msg, err = c.step(r.Context(), r.PostForm.Get("when"), r.PostForm.Get("step"), r.PostForm.Get("action"), r.PostForm.Get("times"))
	case "faults":
		msg, err = c.setFaults(r.Context(), r.PostForm.Get("rules"))
	case "clear":
		msg, err = c.setFaults(r.Context(), "")
	default:
		err = errs.E(errs.NotFound, errs.Msg("no such action"))
	}
	if err != nil {
		c.log.Warn("control room action failed", "action", r.PathValue("action"), "err", err)
		c.fail(w, err)
		return
	}
	c.log.Info("control room action", "action", r.PathValue("action"), "result", msg)
	// A relative location, so that the control room works mounted under a prefix.
	w.Header().Set("Location", "../?flash="+c.addFlash(crFlash{Message: msg})+"#result")
	w.WriteHeader(http.StatusSeeOther)
}

func (c *ControlRoom) addFlash(f crFlash) string {
	var id [8]byte
	_, _ = rand.Read(id[:])
	k := hex.EncodeToString(id[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flashes[k] = f
	c.flashOrder = append(c.flashOrder, k)
	if len(c.flashOrder) > 50 {
		delete(c.flashes, c.flashOrder[0])
		c.flashOrder = c.flashOrder[1:]
	}
	return k
}

func (c *ControlRoom) kill(name string) (string, error) {
	if !slices.ContainsFunc(c.cfg.Fleet.Procs(), func(p Proc) bool { return p.Name == name }) {
		return "", errs.E(errs.BadRequest, errs.Msg("no process named %q in the fleet", name))
	}
	if err := c.cfg.Fleet.Kill(name); err != nil {
		return "", errs.E(errs.Unavailable, errs.Msg("could not kill %s: %v", name, err))
	}
	return "Killed " + name + "; the supervisor restarts it.", nil
}

func (c *ControlRoom) latency(ctx context.Context, service, delay string) (string, error) {
	service, delay = strings.TrimSpace(service), strings.TrimSpace(delay)
	if !crServiceName.MatchString(service) {
		return "", errs.E(errs.BadRequest, errs.Msg("service %q: want a service name such as payment", service))
	}
	d, err := time.ParseDuration(delay)
	if err != nil || d < 0 || d > time.Minute {
		return "", errs.E(errs.BadRequest, errs.Msg("delay %q: want a duration up to 1m, such as 250ms", delay))
	}
	return c.setFaults(ctx, mergeRule(c.rules(), "service:"+service+"="+d.String()))
}

func (c *ControlRoom) step(ctx context.Context, when, step, action, times string) (string, error) {
	if when != "before" && when != "after" && when != "mid" {
		return "", errs.E(errs.BadRequest, errs.Msg("when %q: want before, after or mid", when))
	}
	step = strings.TrimSpace(step)
	if !crStepName.MatchString(step) {
		return "", errs.E(errs.BadRequest, errs.Msg("step %q: want a step name such as capture_payment", step))
	}
	rule := when + ":" + step + "=" + action
	if times = strings.TrimSpace(times); times != "" {
		rule += "*" + times
	}
	return c.setFaults(ctx, mergeRule(c.rules(), rule))
}

func (c *ControlRoom) rules() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastRules
}

// mergeRule adds rule to the rules in spec, replacing one at the same point.
func mergeRule(spec, rule string) string {
	point, _, _ := strings.Cut(rule, "=")
	var out []string
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		if p, _, _ := strings.Cut(part, "="); part == "" || p == point {
			continue
		}
		out = append(out, part)
	}
	return strings.Join(append(out, rule), ",")
}

// setFaults checks rules with the fault package's parser, then PUTs them to
// every checkout process. Invalid rules are a 400 and reach no process.
func (c *ControlRoom) setFaults(ctx context.Context, rules string) (string, error) {
	rules = strings.TrimSpace(rules)
	if len(rules) > 4096 {
		return "", errs.E(errs.BadRequest, errs.Msg("fault rules are limited to 4096 bytes"))
	}
	if err := fault.New(func() {}).Set(rules); err != nil {
		return "", errs.E(errs.BadRequest, errs.Msg("%s", errs.Detail(err)))
	}
	var targets []Proc
	for _, p := range c.cfg.Fleet.Procs() {
		if p.Kind == "shop" && p.InternalURL != "" && slices.Contains(p.Services, "checkout") {
			targets = append(targets, p)
		}
	}
	if len(targets) == 0 {
		return "", errs.E(errs.Conflict, errs.Msg("no checkout process in the fleet to set faults on"))
	}
	type res struct {
		name string
		err  error
	}
	out := make([]res, len(targets))
	var wg sync.WaitGroup
	for i, p := range targets {
		wg.Go(func() { out[i] = res{p.Name, c.putFaults(ctx, p, rules)} })
	}
	wg.Wait()
	var ok, bad []string
	for _, r := range out {
		if r.err != nil {
			bad = append(bad, r.name+" ("+r.err.Error()+")")
		} else {
			ok = append(ok, r.name)
		}
	}
	if len(ok) == 0 {
		return "", errs.E(errs.Unavailable, errs.Msg("no checkout process took the rules: %s", strings.Join(bad, "; ")))
	}
	c.mu.Lock()
	c.lastRules = rules
	c.mu.Unlock()
	what := "Fault rules set to " + strconv.Quote(rules)
	if rules == "" {
		what = "Fault rules cleared"
	}
	msg := what + " on " + strings.Join(ok, ", ") + "."
	if len(bad) > 0 {
		msg += " Not on: " + strings.Join(bad, "; ") + "."
	}
	return msg, nil
}

func (c *ControlRoom) putFaults(ctx context.Context, p Proc, rules string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, p.InternalURL+c.cfg.FaultsPath, strings.NewReader(rules))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	if c.cfg.OperatorToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.OperatorToken)
	}
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return errs.FromProblem("cluster.putFaults", resp.StatusCode, b)
	}
	return nil
}
