// Package openapitest checks HTTP answers against the storefront's OpenAPI
// 3.1 document, for tests: a Contract says whether a request names a
// documented operation and whether the answer's status and body are the
// ones documented for it, and Transport applies it to every answer an
// http.Client receives, so that a test suite cannot drift from the
// document. Bodies are validated with a JSON Schema 2020-12 validator
// (santhosh-tekuri/jsonschema) against the schemas of the document as
// served, not against the Go types it was made from.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// docURL names the document for the schema compiler; nothing is fetched.
const docURL = "urn:globomantics:openapi.json"

// Contract is a compiled OpenAPI document.
type Contract struct {
	mux *http.ServeMux               // one pattern per documented operation
	ops map[string]map[int]*response // by pattern, by status
}

type response struct {
	content map[string]*jsonschema.Schema // by media type; nil schema: any body
}

// New compiles the OpenAPI 3.1 document doc (JSON).
func New(doc []byte) (*Contract, error) {
	var raw struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Responses map[string]struct {
				Content map[string]struct {
					Schema json.RawMessage `json:"schema"`
				} `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, fmt.Errorf("openapitest: the document is not JSON: %w", err)
	}
	if !strings.HasPrefix(raw.OpenAPI, "3.1") {
		return nil, fmt.Errorf("openapitest: the document is OpenAPI %q, want 3.1", raw.OpenAPI)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("openapitest: %w", err)
	}
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020)
	comp.AssertFormat()
	if err := comp.AddResource(docURL, v); err != nil {
		return nil, fmt.Errorf("openapitest: %w", err)
	}
	c := &Contract{mux: http.NewServeMux(), ops: map[string]map[int]*response{}}
	for path, item := range raw.Paths {
		for method, o := range item {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
			default:
				continue // parameters, summary, ...
			}
			pattern := strings.ToUpper(method) + " " + path
			c.mux.Handle(pattern, http.NotFoundHandler())
			byStatus := map[int]*response{}
			for code, r := range o.Responses {
				st, err := strconv.Atoi(code)
				if err != nil {
					return nil, fmt.Errorf("openapitest: %s: response %q: only explicit statuses are supported", pattern, code)
				}
				resp := &response{content: map[string]*jsonschema.Schema{}}
				for media, mt := range r.Content {
					if len(mt.Schema) == 0 || !isJSON(media) {
						resp.content[media] = nil
						continue
					}
					loc := docURL + "#/paths/" + escape(path) + "/" + method + "/responses/" + code + "/content/" + escape(media) + "/schema"
					sch, err := comp.Compile(loc)
					if err != nil {
						return nil, fmt.Errorf("openapitest: %s %d %s: %w", pattern, st, media, err)
					}
					resp.content[media] = sch
				}
				byStatus[st] = resp
			}
			c.ops[pattern] = byStatus
		}
	}
	return c, nil
}

// escape escapes s as a JSON pointer token (RFC 6901) in a URI fragment.
func escape(s string) string {
	s = strings.ReplaceAll(s, "~", "~0")
	s = strings.ReplaceAll(s, "/", "~1")
	return strings.NewReplacer("{", "%7B", "}", "%7D").Replace(s)
}

func isJSON(media string) bool {
	return media == "application/json" || strings.HasSuffix(media, "+json")
}

// Operation is the pattern ("GET /api/v1/products/{id}") of the documented
// operation req names, or "".
func (c *Contract) Operation(req *http.Request) string {
	_, pattern := c.mux.Handler(req)
	return pattern
}

// Operations are the patterns of every documented operation.
func (c *Contract) Operations() []string {
	return slices.Sorted(maps.Keys(c.ops))
}

// Check returns why the answer (status, header, body) to req breaks the
// contract, or nil: the request must name a documented operation, the
// status must be documented for it, and the body must be of a documented
// media type and, for JSON, valid against its schema.
func (c *Contract) Check(req *http.Request, status int, header http.Header, body []byte) error {
	_, pattern := c.mux.Handler(req)
	if pattern == "" {
		return fmt.Errorf("%s %s: no such operation in the OpenAPI document (answered %d)", req.Method, req.URL.Path, status)
	}
	r := c.ops[pattern][status] // a HEAD request matches the GET pattern
	if r == nil {
		return fmt.Errorf("%s %s (%s): status %d is not documented: %s", req.Method, req.URL.Path, pattern, status, clip(body))
	}
	if len(body) == 0 && (len(r.content) == 0 || req.Method == http.MethodHead || status == http.StatusNotModified) {
		return nil
	}
	if len(r.content) == 0 {
		return fmt.Errorf("%s %s (%s): %d has a body, documented as none: %s", req.Method, req.URL.Path, pattern, status, clip(body))
	}
	media, _, err := mime.ParseMediaType(header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("%s %s (%s): %d: bad Content-Type %q", req.Method, req.URL.Path, pattern, status, header.Get("Content-Type"))
	}
	sch, ok := r.content[media]
	if !ok {
		return fmt.Errorf("%s %s (%s): %d: Content-Type %s is not documented", req.Method, req.URL.Path, pattern, status, media)
	}
	if sch == nil {
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s (%s): %d: the body is not JSON: %v: %s", req.Method, req.URL.Path, pattern, status, err, clip(body))
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s %s (%s): %d: the body does not match the documented schema: %v\nbody: %s", req.Method, req.URL.Path, pattern, status, err, clip(body))
	}
	return nil
}

func clip(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// DocumentPath is where the storefront serves its OpenAPI 3.1 document.
const DocumentPath = "/api/v1/openapi.json"

// Transport is an http.RoundTripper that checks every answer under Prefix
// against the contract and reports a breach as an error of TB. The contract
// is the document served by the first server asked (at DocumentPath), or
// Contract when it is set.
type Transport struct {
	Base     http.RoundTripper // nil: http.DefaultTransport
	TB       testing.TB
	Prefix   string    // the paths checked; "" means "/api/"
	Contract *Contract // nil: fetched from the server
	// Observe, when set, is told the operation (its pattern) and status of
	// every answer checked, e.g. to see which operations a suite exercised.
	Observe func(pattern string, status int)

	mu      sync.Mutex
	fetched *Contract
}

// RoundTrip sends req with Base and checks the answer.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	prefix := t.Prefix
	if prefix == "" {
		prefix = "/api/"
	}
	if err != nil || !strings.HasPrefix(req.URL.Path, prefix) {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	c, cerr := t.contract(req)
	if cerr != nil {
		t.TB.Errorf("openapitest: no contract to check %s %s against: %v", req.Method, req.URL.Path, cerr)
		return resp, nil
	}
	if resp.Header.Get("Content-Encoding") != "" {
		t.TB.Errorf("openapitest: %s %s: the answer is still %s-encoded; leave decompression to the transport", req.Method, req.URL.Path, resp.Header.Get("Content-Encoding"))
		return resp, nil
	}
	if err := c.Check(req, resp.StatusCode, resp.Header, body); err != nil {
		t.TB.Errorf("API contract: %v", err)
	}
	if t.Observe != nil {
		t.Observe(c.Operation(req), resp.StatusCode)
	}
	return resp, nil
}

func (t *Transport) contract(req *http.Request) (*Contract, error) {
	if t.Contract != nil {
		return t.Contract, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fetched != nil {
		return t.fetched, nil
	}
	c, err := Fetch(req.Context(), t.Base, req.URL.Scheme+"://"+req.URL.Host)
	if err != nil {
		return nil, err
	}
	t.fetched = c
	return c, nil
}

// Fetch compiles the document served at DocumentPath by the server at
// baseURL ("http://host:port"), asked through rt (nil: the default).
func Fetch(ctx context.Context, rt http.RoundTripper, baseURL string) (*Contract, error) {
	if rt == nil {
		rt = http.DefaultTransport
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+DocumentPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", req.URL, resp.Status, clip(b))
	}
	return New(b)
}
