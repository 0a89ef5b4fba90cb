package cluster

import (
	"context"
	"crypto/subtle"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Readiness is the answer of GET /api/ready.
type Readiness struct {
	Ready bool   `json:"ready"`
	Stage string `json:"stage,omitempty"` // the start stage in progress
	Error string `json:"error,omitempty"` // why the start failed
}

// Info is the answer of GET /api/info: where the fleet's parts are (no
// secrets).
type Info struct {
	Dir             string   `json:"dir"`
	ShopURL         string   `json:"shop_url"`
	ControlURL      string   `json:"control_url"`
	EdgeInternalURL string   `json:"edge_internal_url"`
	NATSURLs        []string `json:"nats_urls"`
	RedisURL        string   `json:"redis_url"`
}

// controlHandler is the control listener: /api/ and, on /, the control
// room. guardPOST requires the operator credential for POST requests
// (when the listener is not on loopback).
func (s *Supervisor) controlHandler(guardPOST bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", s.apiHandler(guardPOST))
	room := s.ControlRoom
	if room == nil {
		room = http.HandlerFunc(s.plainPage)
	}
	if s.ControlRoom != nil { // the control room's JSON beside the supervisor's
		mux.Handle("GET /api/overview", room)
	}
	mux.Handle("/", room)
	return mux
}

// writeJSON writes v as JSON, not to be cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, status, v)
}

// apiHandler serves:
//
//	GET  /api/procs                  []Proc
//	GET  /api/ready                  Readiness (200 ready, 503 not yet, 500 failed)
//	GET  /api/info                   Info
//	GET  /api/groups/{group}         {"group":..., "count":n}
//	POST /api/procs/{name}/kill      SIGKILL (then restarted)
//	POST /api/groups/{group}/add     Proc of the new instance, once ready
//	POST /api/groups/{group}/remove  Proc of the removed instance
func (s *Supervisor) apiHandler(guardPOST bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/procs", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.Procs()) })
	mux.HandleFunc("GET /api/ready", func(w http.ResponseWriter, r *http.Request) {
		rd := s.readiness()
		status := http.StatusOK
		switch {
		case rd.Error != "":
			status = http.StatusInternalServerError
		case !rd.Ready:
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, rd)
	})
	mux.HandleFunc("GET /api/info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, Info{Dir: s.Dir(), ShopURL: s.ShopURL(), ControlURL: s.ControlURL(), EdgeInternalURL: s.EdgeInternalURL(),
			NATSURLs: s.NATSURLs(), RedisURL: s.RedisURL()})
	})
	mux.HandleFunc("GET /api/groups/{group}", func(w http.ResponseWriter, r *http.Request) {
		g := r.PathValue("group")
		if err := s.scalableOrKnown(g); err != nil {
			errs.WriteProblem(w, r, err)
			return
		}
		writeJSON(w, 200, map[string]any{"group": g, "count": s.Count(g)})
	})
	post := func(pattern string, fn func(r *http.Request) (any, error)) {
		mux.HandleFunc("POST "+pattern, func(w http.ResponseWriter, r *http.Request) {
			if guardPOST && !s.operatorAllowed(r) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="globomantics cluster"`)
				errs.WriteProblem(w, r, errs.E(errs.Unauthorized, errs.Msg("the operator credential is required")))
				return
			}
			v, err := fn(r)
			if err != nil {
				errs.WriteProblem(w, r, err)
				return
			}
			writeJSON(w, 200, v)
		})
	}
	post("/api/procs/{name}/kill", func(r *http.Request) (any, error) {
		name := r.PathValue("name")
		if err := s.Kill(name); err != nil {
			return nil, err
		}
		return map[string]string{"killed": name}, nil
	})
	post("/api/groups/{group}/add", func(r *http.Request) (any, error) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		defer cancel()
		return s.Add(ctx, r.PathValue("group"))
	})
	post("/api/groups/{group}/remove", func(r *http.Request) (any, error) {
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		return s.Remove(ctx, r.PathValue("group"))
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		errs.WriteProblem(w, r, errs.E(errs.NotFound, errs.Msg("no such API")))
	})
	return mux
}

func (s *Supervisor) scalableOrKnown(group string) error {
	for _, p := range s.childProcs() {
		if p.Group == group {
			return nil
		}
	}
	return fmt.Errorf("cluster: %s: %w", group, ErrUnknown)
}

func (s *Supervisor) operatorAllowed(r *http.Request) bool {
	want := s.OperatorCredential()
	got := r.Header.Get("Authorization")
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+want)) == 1
}

func (s *Supervisor) readiness() Readiness {
	if s.fleet == nil {
		return Readiness{Ready: true}
	}
	f := s.fleet
	f.mu.Lock()
	defer f.mu.Unlock()
	rd := Readiness{Ready: f.ready, Stage: f.stage}
	if f.failed != nil {
		rd.Error = f.failed.Error()
	}
	return rd
}

var plainTmpl = template.Must(template.New("procs").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Globomantics fleet</title>
<meta http-equiv="refresh" content="2"></head><body>
<h1>Globomantics fleet</h1>
<p>Shop: <a href="{{.Shop}}">{{.Shop}}</a></p>
<table border="1" cellpadding="4"><tr><th>name</th><th>group</th><th>kind</th><th>state</th><th>pid</th><th>restarts</th><th>last exit</th><th>URL</th></tr>
{{range .Procs}}<tr><td>{{.Name}}</td><td>{{.Group}}</td><td>{{.Kind}}</td><td>{{.State}}</td><td>{{.PID}}</td><td>{{.Restarts}}</td><td>{{.LastExit}}</td><td>{{if .PublicURL}}{{.PublicURL}}{{else}}{{.InternalURL}}{{end}}</td></tr>
{{end}}</table></body></html>
`))

// plainPage lists the processes: the control listener's / when no control
// room is plugged in.
func (s *Supervisor) plainPage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = plainTmpl.Execute(w, struct {
		Shop  string
		Procs []Proc
	}{s.ShopURL(), s.Procs()})
}
