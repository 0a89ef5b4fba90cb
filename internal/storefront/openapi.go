package storefront

import (
	"encoding/json"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/danielgtaylor/huma/v2"

	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// The public API is described by one table of operations (apiOps in
// storefront.go, partnerOps in partnerapi.go). The mux is built from it
// (registerAPI) and so is the OpenAPI 3.1 document (buildOpenAPI), whose
// schemas are reflected by huma from the very Go types the handlers decode
// and encode. A route cannot be served without being documented, and a field
// added to a type appears in the document by itself. See
// docs/decisions/0013-openapi.md.

// apiOp is one operation of the public API: its route, handler and contract.
// Make one with op or partnerOp and describe it with the chained methods.
type apiOp struct {
	method, path string
	id, summary  string
	desc         string
	auth         apiAuth
	h            func(w http.ResponseWriter, r *http.Request) error
	ph           func(w http.ResponseWriter, r *http.Request, pt partner.Partner) error
	body         reflect.Type // JSON request body, or nil
	bodyMedia    []string     // raw request body media types (an image upload)
	params       []apiParam
	responses    []apiResponse
	errors       []int
	cacheable    bool // ETag and 304 Not Modified
}

// apiAuth is how an operation's caller is identified.
type apiAuth int

const (
	authNone            apiAuth = iota
	authOptionalSession         // a session cookie when logged in, or an anonymous cart cookie
	authSession                 // the session cookie of a logged-in customer
	authPartner                 // Authorization: Bearer <partner key>
)

type apiParam struct {
	in, name, desc string
	required       bool
	typ            string // JSON Schema type: "string" or "integer"
}

type apiResponse struct {
	status int
	typ    reflect.Type // JSON body; nil with media "" for no body
	media  string       // a raw (non-JSON) body's media type
	desc   string
}

// op returns the operation served at pattern ("METHOD /api/v1/path", as
// for http.ServeMux) by h; id is its operationId (the generated client's
// method name) and summary its one-line description.
func op(pattern, id, summary string, h func(w http.ResponseWriter, r *http.Request) error) *apiOp {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		panic("storefront: API pattern without a method: " + pattern)
	}
	return &apiOp{method: method, path: path, id: id, summary: summary, h: h}
}

// partnerOp is op for the partner API: h gets the authenticated partner.
func partnerOp(pattern, id, summary string, h func(w http.ResponseWriter, r *http.Request, pt partner.Partner) error) *apiOp {
	o := op(pattern, id, summary, nil)
	o.ph, o.auth = h, authPartner
	return o.fails(http.StatusUnauthorized, http.StatusTooManyRequests)
}

// about sets the operation's longer description.
func (o *apiOp) about(desc string) *apiOp { o.desc = desc; return o }

// in sets the JSON request body's type from a value of it.
func (o *apiOp) in(v any) *apiOp { o.body = reflect.TypeOf(v); return o }

// inRaw says the request body is raw bytes of one of the media types.
func (o *apiOp) inRaw(media ...string) *apiOp { o.bodyMedia = media; return o }

// out adds a success answer with status and a JSON body of v's type (nil:
// no body).
func (o *apiOp) out(status int, v any, desc string) *apiOp {
	var t reflect.Type
	if v != nil {
		t = reflect.TypeOf(v)
	}
	o.responses = append(o.responses, apiResponse{status: status, typ: t, desc: desc})
	return o
}

// outRaw adds a success answer with a body of the given media type.
func (o *apiOp) outRaw(status int, media, desc string) *apiOp {
	o.responses = append(o.responses, apiResponse{status: status, media: media, desc: desc})
	return o
}

// query adds an optional query parameter of type "string" or "integer".
func (o *apiOp) query(name, typ, desc string) *apiOp {
	o.params = append(o.params, apiParam{in: "query", name: name, typ: typ, desc: desc})
	return o
}

// header adds a required request header.
func (o *apiOp) header(name, desc string) *apiOp {
	o.params = append(o.params, apiParam{in: "header", name: name, typ: "string", desc: desc, required: true})
	return o
}

// fails lists the error statuses (problem+json) the operation answers
// besides those every operation may (see commonErrors).
func (o *apiOp) fails(status ...int) *apiOp { o.errors = append(o.errors, status...); return o }

// session says the operation needs a logged-in customer (401 otherwise).
func (o *apiOp) session() *apiOp {
	o.auth = authSession
	return o.fails(http.StatusUnauthorized)
}

// visitor says the operation serves anonymous visitors (by their cart
// cookie) as well as logged-in customers.
func (o *apiOp) visitor() *apiOp { o.auth = authOptionalSession; return o }

// cached says the answer is public, with an ETag, and 304 to a matching
// If-None-Match.
func (o *apiOp) cached() *apiOp { o.cacheable = true; return o }

// pattern is the operation's http.ServeMux pattern.
func (o *apiOp) pattern() string { return o.method + " " + o.path }

// registerAPI adds every operation of ops to mux. Partner operations are
// served only when the storefront has a partner service (they are
// documented either way).
func (s *Server) registerAPI(mux *http.ServeMux, ops []*apiOp) {
	for _, o := range ops {
		h := o.h
		if o.ph != nil {
			if s.d.Partners == nil {
				continue
			}
			h = s.withPartner(o.ph)
		}
		mux.Handle(o.pattern(), s.apiHandler(h))
	}
}

// commonErrors are the error statuses every operation may answer: a
// cross-origin browser request for unsafe methods, a malformed request, an
// internal error, and a service the storefront needs being unavailable.
func (o *apiOp) commonErrors() []int {
	st := []int{http.StatusInternalServerError, http.StatusServiceUnavailable}
	switch o.method {
	case http.MethodGet, http.MethodHead:
	default:
		st = append(st, http.StatusForbidden)
	}
	if o.body != nil || len(o.bodyMedia) > 0 {
		st = append(st, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType)
	}
	if len(o.params) > 0 {
		st = append(st, http.StatusBadRequest)
	}
	return st
}

// apiTitle and apiVersion name the document.
const (
	apiTitle   = "Globomantics storefront API"
	apiVersion = "1.0.0"
)

const apiDescription = `The public JSON API of the Globomantics shop (v1) and its partner API.

Customers are identified by the session cookie set by POST /api/v1/sessions (and, before they log in, by an anonymous cart cookie). Partners send "Authorization: Bearer <key>". Errors are RFC 9457 problem details (application/problem+json). Browsing answers (catalogue, search) are public and carry an ETag; answers for one customer are private and never cached.`

// problemSchemaName is the schema of every error answer.
const problemSchemaName = "ProblemDetails"

// schemaName names the schema of t: its Go name, prefixed with its
// package's for the packages whose type names would otherwise collide
// (order.Item and cart.Item, partner.Product and catalog.Product), so that
// catalog.Product is "Product", partner.Product "PartnerProduct" and the
// storefront's List[catalog.Product] "ListProduct".
func schemaName(t reflect.Type, hint string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[errs.Problem]() {
		return problemSchemaName
	}
	if t.Name() == "" {
		return upperFirst(hint)
	}
	return qualifiedName(t.PkgPath(), t.Name())
}

// qualifiedName is the schema name of the type name (possibly generic, e.g.
// "List[github.com/.../catalog.Product]") declared in package pkgPath.
func qualifiedName(pkgPath, name string) string {
	base, args, generic := strings.Cut(name, "[")
	out := prefixFor(pkgPath, base) + upperFirst(base)
	if generic {
		for _, a := range strings.Split(strings.TrimSuffix(args, "]"), ",") {
			i := strings.LastIndex(a, ".")
			if i < 0 { // a predeclared type: int, string
				out += upperFirst(a)
				continue
			}
			out += qualifiedName(a[:i], a[i+1:])
		}
	}
	return out
}

// unprefixed are the packages whose type names are used as they are.
var unprefixed = map[string]bool{"storefront": true, "catalog": true, "money": true}

func prefixFor(pkgPath, name string) string {
	pkg := pkgPath[strings.LastIndex(pkgPath, "/")+1:]
	p := upperFirst(pkg)
	if pkg == "" || unprefixed[pkg] || strings.HasPrefix(name, p) {
		return ""
	}
	return p
}

func upperFirst(s string) string {
	for i, r := range s {
		return string(unicode.ToUpper(r)) + s[i+len(string(r)):]
	}
	return s
}

// buildOpenAPI returns the OpenAPI 3.1 document of ops.
func buildOpenAPI(ops []*apiOp) *huma.OpenAPI {
	reg := huma.NewMapRegistry("#/components/schemas/", schemaName)
	doc := &huma.OpenAPI{
		OpenAPI: "3.1.0",
		Info:    &huma.Info{Title: apiTitle, Version: apiVersion, Description: apiDescription},
		Components: &huma.Components{
			Schemas: reg,
			SecuritySchemes: map[string]*huma.SecurityScheme{
				"session": {
					Type: "apiKey", In: "cookie", Name: SessionCookie,
					Description: "The customer's session, set by POST /api/v1/sessions (named __Host-" + SessionCookie + " when the shop is served over HTTPS).",
				},
				"cart": {
					Type: "apiKey", In: "cookie", Name: CartCookie,
					Description: "An anonymous visitor's cart, set by the first cart change; merged into the account's cart on login.",
				},
				"partnerKey": {
					Type: "http", Scheme: "bearer",
					Description: "A partner's API key, issued by the shop's operators.",
				},
			},
		},
	}
	problem := reg.Schema(reflect.TypeFor[errs.Problem](), true, problemSchemaName)
	tags := map[string]bool{}
	for _, o := range ops {
		hop := &huma.Operation{
			Method:      o.method,
			Path:        o.path,
			OperationID: o.id,
			Summary:     o.summary,
			Description: o.desc,
			Tags:        []string{tagOf(o.path)},
			Responses:   map[string]*huma.Response{},
		}
		tags[hop.Tags[0]] = true
		switch o.auth {
		case authSession:
			hop.Security = []map[string][]string{{"session": {}}}
		case authOptionalSession:
			hop.Security = []map[string][]string{{}, {"session": {}}, {"cart": {}}}
		case authPartner:
			hop.Security = []map[string][]string{{"partnerKey": {}}}
		default:
			hop.Security = []map[string][]string{}
		}
		for _, name := range pathParams(o.path) {
			hop.Parameters = append(hop.Parameters, &huma.Param{Name: name, In: "path", Required: true, Schema: &huma.Schema{Type: "string"}})
		}
		for _, p := range o.params {
			hop.Parameters = append(hop.Parameters, &huma.Param{Name: p.name, In: p.in, Required: p.required, Description: p.desc, Schema: &huma.Schema{Type: p.typ}})
		}
		if o.body != nil {
			hop.RequestBody = &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
				"application/json": {Schema: reg.Schema(o.body, true, upperFirst(o.id)+"Request")},
			}}
		}
		if len(o.bodyMedia) > 0 {
			c := map[string]*huma.MediaType{}
			for _, m := range o.bodyMedia {
				c[m] = &huma.MediaType{Schema: &huma.Schema{Type: "string", Format: "binary"}}
			}
			hop.RequestBody = &huma.RequestBody{Required: true, Content: c}
		}
		for _, r := range o.responses {
			resp := &huma.Response{Description: r.desc}
			switch {
			case r.typ != nil:
				resp.Content = map[string]*huma.MediaType{"application/json": {Schema: reg.Schema(r.typ, true, upperFirst(o.id)+"Response")}}
			case r.media == "application/json": // a document of its own
				resp.Content = map[string]*huma.MediaType{r.media: {Schema: &huma.Schema{Type: huma.TypeObject}}}
			case r.media != "":
				resp.Content = map[string]*huma.MediaType{r.media: {Schema: &huma.Schema{Type: huma.TypeString}}}
			}
			hop.Responses[strconv.Itoa(r.status)] = resp
		}
		if o.cacheable {
			hop.Responses["304"] = &huma.Response{Description: "Not Modified: the If-None-Match header names the current ETag."}
		}
		errStatuses := append(slices.Clone(o.errors), o.commonErrors()...)
		slices.Sort(errStatuses)
		for _, st := range slices.Compact(errStatuses) {
			hop.Responses[strconv.Itoa(st)] = &huma.Response{
				Description: errorDescription(st),
				Content:     map[string]*huma.MediaType{"application/problem+json": {Schema: problem}},
			}
		}
		doc.AddOperation(hop)
	}
	for _, name := range slices.Sorted(maps.Keys(tags)) {
		doc.Tags = append(doc.Tags, &huma.Tag{Name: name, Description: tagDescriptions[name]})
	}
	fixFields(reg)
	arraysNotNull(reg)
	return doc
}

// arraysNotNull says that arrays are never null: every handler answers an
// empty list as [] (huma's reflection allows null, as encoding/json writes
// a nil slice). The contract tests hold the handlers to it.
func arraysNotNull(reg huma.Registry) {
	var walk func(s *huma.Schema)
	walk = func(s *huma.Schema) {
		if s == nil {
			return
		}
		if s.Type == huma.TypeArray {
			s.Nullable = false
		}
		walk(s.Items)
		for _, p := range s.Properties {
			walk(p)
		}
		if ap, ok := s.AdditionalProperties.(*huma.Schema); ok {
			walk(ap)
		}
	}
	for _, s := range reg.Map() {
		walk(s)
	}
}

// fixFields lets the properties that encoding/json writes as null be null:
// a pointer to a struct without omitempty (CheckoutView.error) is encoded as
// null when nil, which huma's reflection does not describe. And a Go int,
// whose size is the platform's, gets no int64 format (generated clients
// then use int, as the server does).
func fixFields(reg huma.Registry) {
	for name, s := range reg.Map() {
		t := reg.TypeFromRef("#/components/schemas/" + name)
		if t == nil || t.Kind() != reflect.Struct {
			continue
		}
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			jname, opts, _ := strings.Cut(tag, ",")
			if jname == "" {
				jname = f.Name
			}
			if jname == "-" || !f.IsExported() {
				continue
			}
			ps := s.Properties[jname]
			if ps != nil && f.Type.Kind() == reflect.Int && ps.Type == huma.TypeInteger {
				ps.Format = ""
			}
			if f.Type.Kind() != reflect.Pointer || strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
				continue
			}
			if f.Type.Elem().Kind() != reflect.Struct {
				continue
			}
			if ps != nil && ps.Ref != "" {
				s.Properties[jname] = &huma.Schema{AnyOf: []*huma.Schema{{Ref: ps.Ref}, {Type: "null"}}}
			}
		}
	}
}

// pathParams are the {names} of a path pattern.
func pathParams(path string) []string {
	var out []string
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			out = append(out, strings.TrimSuffix(strings.TrimSuffix(seg[1:len(seg)-1], "..."), "$"))
		}
	}
	return out
}

// tagOf groups an operation by its path.
func tagOf(path string) string {
	rest := strings.TrimPrefix(path, "/api/v1/")
	first, _, _ := strings.Cut(rest, "/")
	switch first {
	case "partner":
		return "Partner API"
	case "categories", "products", "search":
		return "Catalogue"
	case "accounts", "sessions", "me", "password-resets", "password":
		return "Account"
	case "cart":
		return "Cart"
	case "checkout", "checkouts", "orders":
		return "Orders"
	case "openapi.json", "openapi-3.0.json", "docs":
		return "Reference"
	}
	return upperFirst(first)
}

var tagDescriptions = map[string]string{
	"Catalogue":   "Categories, products and search: public, cacheable answers.",
	"Account":     "Registration, sessions and the customer's profile.",
	"Cart":        "The visitor's cart, anonymous or the customer's.",
	"Orders":      "Checkout and the customer's orders.",
	"Partner API": "For partners selling through the shop: listings, sales and webhooks. Every request carries Authorization: Bearer <key>.",
	"Reference":   "This document and its rendered reference.",
}

// errorDescription describes an error status in the document.
func errorDescription(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "Bad Request: a malformed body, an unknown field or a bad query parameter."
	case http.StatusUnauthorized:
		return "Unauthorized: not logged in, or no valid credential."
	case http.StatusPaymentRequired:
		return "Payment Required: the card was declined."
	case http.StatusForbidden:
		return "Forbidden: a cross-origin browser request was refused."
	case http.StatusNotFound:
		return "Not Found."
	case http.StatusConflict:
		return "Conflict with the current state (taken, out of stock, or an idempotency key reused with another request)."
	case http.StatusRequestEntityTooLarge:
		return "Content Too Large: the request body is too large."
	case http.StatusUnsupportedMediaType:
		return "Unsupported Media Type: the body must be sent with the documented Content-Type."
	case http.StatusUnprocessableEntity:
		return "Unprocessable Content: a field is invalid; detail says which."
	case http.StatusTooManyRequests:
		return "Too Many Requests: a rate limit was reached; see Retry-After."
	case http.StatusInternalServerError:
		return "Internal Server Error."
	case http.StatusServiceUnavailable:
		return "Service Unavailable: a service the shop needs is unavailable; try again later."
	}
	return http.StatusText(status) + "."
}

// apiDocument is the API's OpenAPI document as served: the 3.1 JSON, its
// 3.0 downgrade (for tools that read only 3.0), and the rendered reference.
type apiDocument struct {
	json, json30, html     []byte
	etag, etag30, etagHTML string
}

// newAPIDocument builds the document of ops and renders it; cssURL is the
// stylesheet of the reference page.
func newAPIDocument(ops []*apiOp, cssURL string) (*apiDocument, error) {
	doc := buildOpenAPI(ops)
	j, j30, err := documentsJSON(doc)
	if err != nil {
		return nil, err
	}
	page, err := renderReference(doc, cssURL)
	if err != nil {
		return nil, err
	}
	return &apiDocument{json: j, json30: j30, html: page, etag: etagOf(j), etag30: etagOf(j30), etagHTML: etagOf(page)}, nil
}

// OpenAPI returns the OpenAPI 3.1 document of the storefront's public API
// and partner API, as served at /api/v1/openapi.json.
func OpenAPI() *huma.OpenAPI {
	s := &Server{}
	return buildOpenAPI(s.apiOps())
}

// OpenAPIDocuments are the JSON of OpenAPI(), as served at
// /api/v1/openapi.json, and of its 3.0.3 downgrade (OpenAPI30JSON).
func OpenAPIDocuments() (v31, v30 []byte, err error) {
	return documentsJSON(OpenAPI())
}

func documentsJSON(doc *huma.OpenAPI) (v31, v30 []byte, err error) {
	if v31, err = OpenAPIJSON(doc); err != nil {
		return nil, nil, err
	}
	if v30, err = OpenAPI30JSON(doc); err != nil {
		return nil, nil, err
	}
	return v31, v30, nil
}

// OpenAPIJSON is doc as indented JSON, ending in a newline.
func OpenAPIJSON(doc *huma.OpenAPI) ([]byte, error) {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, errs.E("storefront.OpenAPIJSON", err)
	}
	return append(b, '\n'), nil
}

// OpenAPI30JSON is doc downgraded to OpenAPI 3.0.3 (huma's Downgrade), for
// tools that do not read 3.1 yet, such as oapi-codegen, as indented JSON.
// Properties that may be null (anyOf with a null type in 3.1) become
// nullable references.
func OpenAPI30JSON(doc *huma.OpenAPI) ([]byte, error) {
	const op = "storefront.OpenAPI30JSON"
	b, err := doc.Downgrade()
	if err != nil {
		return nil, errs.E(op, err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, errs.E(op, err)
	}
	downgradeNullRefs(v)
	optionalParamPointers(v)
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, errs.E(op, err)
	}
	return append(out, '\n'), nil
}

// downgradeNullRefs rewrites {anyOf: [{$ref}, {type: null}]}, which 3.0 has
// no words for, as {allOf: [{$ref}], nullable: true} (and asks
// oapi-codegen for a pointer).
func downgradeNullRefs(v any) {
	switch v := v.(type) {
	case map[string]any:
		if alts, ok := v["anyOf"].([]any); ok && len(alts) == 2 {
			ref, _ := alts[0].(map[string]any)
			null, _ := alts[1].(map[string]any)
			if ref != nil && ref["$ref"] != nil && null != nil && null["type"] == "null" {
				delete(v, "anyOf")
				v["allOf"] = []any{ref}
				v["nullable"] = true
				// A pointer in generated Go clients, so null stays apart
				// from an empty object.
				v["x-go-type-skip-optional-pointer"] = false
			}
		}
		for _, x := range v {
			downgradeNullRefs(x)
		}
	case []any:
		for _, x := range v {
			downgradeNullRefs(x)
		}
	}
}

// optionalParamPointers marks the optional parameters of the 3.0 document
// for oapi-codegen: they stay pointers in the generated client (nil: not
// sent), where optional fields of bodies are plain values.
func optionalParamPointers(doc any) {
	d, _ := doc.(map[string]any)
	paths, _ := d["paths"].(map[string]any)
	for _, item := range paths {
		ops, _ := item.(map[string]any)
		for _, o := range ops {
			op, _ := o.(map[string]any)
			params, _ := op["parameters"].([]any)
			for _, p := range params {
				if p, ok := p.(map[string]any); ok && p["required"] != true {
					p["x-go-type-skip-optional-pointer"] = false
				}
			}
		}
	}
}

// apiOpenAPI serves the OpenAPI 3.1 document: public, with an ETag.
func (s *Server) apiOpenAPI(w http.ResponseWriter, r *http.Request) error {
	d, err := s.apiDoc()
	if err != nil {
		return err
	}
	writeDocument(w, r, d.json, d.etag, "application/json")
	return nil
}

// apiOpenAPI30 serves the document downgraded to OpenAPI 3.0.3.
func (s *Server) apiOpenAPI30(w http.ResponseWriter, r *http.Request) error {
	d, err := s.apiDoc()
	if err != nil {
		return err
	}
	writeDocument(w, r, d.json30, d.etag30, "application/json")
	return nil
}

// apiReference serves the rendered reference page.
func (s *Server) apiReference(w http.ResponseWriter, r *http.Request) error {
	d, err := s.apiDoc()
	if err != nil {
		return err
	}
	writeDocument(w, r, d.html, d.etagHTML, "text/html; charset=utf-8")
	return nil
}

// referenceCacheControl lets clients and the CDN keep the document for five
// minutes; it changes only with a release.
const referenceCacheControl = "public, max-age=300"

func writeDocument(w http.ResponseWriter, r *http.Request, b []byte, etag, contentType string) {
	h := w.Header()
	h.Set("Cache-Control", referenceCacheControl)
	h.Set("ETag", etag)
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// referenceOps is the part of the table that serves the document itself.
func (s *Server) referenceOps() []*apiOp {
	return []*apiOp{
		op("GET /api/v1/openapi.json", "getOpenAPI", "This API's OpenAPI 3.1 document", s.apiOpenAPI).
			outRaw(http.StatusOK, "application/json", "The OpenAPI 3.1 document.").cached(),
		op("GET /api/v1/openapi-3.0.json", "getOpenAPI30", "This API's OpenAPI document downgraded to 3.0.3", s.apiOpenAPI30).
			outRaw(http.StatusOK, "application/json", "The OpenAPI 3.0.3 document, for tools that do not read 3.1.").cached(),
		op("GET /api/v1/docs", "getReference", "The API reference as a web page", s.apiReference).
			outRaw(http.StatusOK, "text/html", "The reference, rendered from the OpenAPI document.").cached(),
	}
}
