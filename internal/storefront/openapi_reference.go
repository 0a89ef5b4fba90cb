package storefront

import (
	"bytes"
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// The API reference page (GET /api/v1/docs) is rendered on the server from
// the OpenAPI document: no script, nothing fetched from elsewhere.

type refPage struct {
	Title, Version, Description string
	CSS                         string
	Tags                        []refTag
	Schemas                     []refSchema
}

type refTag struct {
	Name, Description string
	Ops               []refOp
}

type refOp struct {
	Anchor, Method, Path, ID, Summary, Description string
	Auth                                           string
	Params                                         []refParam
	Body                                           []refContent
	Responses                                      []refResponse
}

type refParam struct {
	Name, In, Type, Description string
	Required                    bool
}

type refContent struct {
	Media string
	Type  template.HTML
}

type refResponse struct {
	Status, Description string
	Content             []refContent
}

type refSchema struct {
	Name, Description string
	Type              template.HTML
	Props             []refProp
}

type refProp struct {
	Name        string
	Type        template.HTML
	Required    bool
	Description string
}

var referenceTemplate = template.Must(template.New("reference").Funcs(template.FuncMap{
	"splitLines": func(s string) []string { return strings.Split(s, "\n\n") },
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} reference</title>
<link rel="stylesheet" href="{{.CSS}}">
</head>
<body>
<main class="wrap api-reference" id="main">
<h1>{{.Title}} <small>v{{.Version}}</small></h1>
{{range splitLines .Description}}<p>{{.}}</p>{{end}}
<p>Machine-readable: <a href="/api/v1/openapi.json">OpenAPI 3.1</a> · <a href="/api/v1/openapi-3.0.json">OpenAPI 3.0</a>.</p>
<nav aria-label="Operations"><h2>Operations</h2>
{{range .Tags}}<h3>{{.Name}}</h3><ul>{{range .Ops}}<li><a href="#{{.Anchor}}"><code>{{.Method}} {{.Path}}</code></a> {{.Summary}}</li>{{end}}</ul>{{end}}
<p><a href="#schemas">Schemas</a></p>
</nav>
{{range .Tags}}<section>
<h2>{{.Name}}</h2>
{{with .Description}}<p>{{.}}</p>{{end}}
{{range .Ops}}<article id="{{.Anchor}}">
<h3><code>{{.Method}} {{.Path}}</code></h3>
<p><strong>{{.Summary}}</strong> <small>(operationId <code>{{.ID}}</code>)</small></p>
{{with .Description}}<p>{{.}}</p>{{end}}
<p>Authentication: {{.Auth}}</p>
{{with .Params}}<h4>Parameters</h4>
<div class="table-scroll"><table class="lines"><thead><tr><th scope="col">Name</th><th scope="col">In</th><th scope="col">Type</th><th scope="col">Required</th><th scope="col">Description</th></tr></thead><tbody>
{{range .}}<tr><td data-label="Name"><code>{{.Name}}</code></td><td data-label="In">{{.In}}</td><td data-label="Type">{{.Type}}</td><td data-label="Required">{{if .Required}}yes{{else}}no{{end}}</td><td data-label="Description">{{.Description}}</td></tr>
{{end}}</tbody></table></div>{{end}}
{{with .Body}}<h4>Request body</h4><ul>{{range .}}<li><code>{{.Media}}</code>: {{.Type}}</li>{{end}}</ul>{{end}}
<h4>Responses</h4>
<div class="table-scroll"><table class="lines"><thead><tr><th scope="col">Status</th><th scope="col">Description</th><th scope="col">Body</th></tr></thead><tbody>
{{range .Responses}}<tr><td data-label="Status">{{.Status}}</td><td data-label="Description">{{.Description}}</td><td data-label="Body">{{range .Content}}<code>{{.Media}}</code> {{.Type}}{{else}}none{{end}}</td></tr>
{{end}}</tbody></table></div>
</article>
{{end}}</section>
{{end}}<section id="schemas">
<h2>Schemas</h2>
{{range .Schemas}}<article id="schema-{{.Name}}">
<h3>{{.Name}}</h3>
{{with .Description}}<p>{{.}}</p>{{end}}
{{if .Props}}<div class="table-scroll"><table class="lines"><thead><tr><th scope="col">Field</th><th scope="col">Type</th><th scope="col">Required</th><th scope="col">Description</th></tr></thead><tbody>
{{range .Props}}<tr><td data-label="Field"><code>{{.Name}}</code></td><td data-label="Type">{{.Type}}</td><td data-label="Required">{{if .Required}}yes{{else}}no{{end}}</td><td data-label="Description">{{.Description}}</td></tr>
{{end}}</tbody></table></div>{{else}}<p>{{.Type}}</p>{{end}}
</article>
{{end}}</section>
</main>
</body>
</html>
`))

// renderReference renders doc as the reference page.
func renderReference(doc *huma.OpenAPI, cssURL string) ([]byte, error) {
	page := refPage{Title: doc.Info.Title, Version: doc.Info.Version, Description: doc.Info.Description, CSS: cssURL}
	byTag := map[string]*refTag{}
	for _, t := range doc.Tags {
		byTag[t.Name] = &refTag{Name: t.Name, Description: t.Description}
	}
	for _, path := range slices.Sorted(maps.Keys(doc.Paths)) {
		item := doc.Paths[path]
		for _, o := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if o == nil {
				continue
			}
			ro := refOp{Anchor: "op-" + o.OperationID, Method: o.Method, Path: o.Path, ID: o.OperationID, Summary: o.Summary, Description: o.Description, Auth: authText(o.Security)}
			for _, p := range o.Parameters {
				ro.Params = append(ro.Params, refParam{Name: p.Name, In: p.In, Type: p.Schema.Type, Description: p.Description, Required: p.Required})
			}
			if o.RequestBody != nil {
				ro.Body = contentOf(o.RequestBody.Content)
			}
			for _, st := range slices.Sorted(maps.Keys(o.Responses)) {
				r := o.Responses[st]
				ro.Responses = append(ro.Responses, refResponse{Status: st, Description: r.Description, Content: contentOf(r.Content)})
			}
			tag := byTag[o.Tags[0]]
			if tag == nil {
				tag = &refTag{Name: o.Tags[0]}
				byTag[o.Tags[0]] = tag
			}
			tag.Ops = append(tag.Ops, ro)
		}
	}
	for _, t := range doc.Tags {
		page.Tags = append(page.Tags, *byTag[t.Name])
	}
	schemas := doc.Components.Schemas.Map()
	for _, name := range slices.Sorted(maps.Keys(schemas)) {
		s := schemas[name]
		rs := refSchema{Name: name, Description: s.Description, Type: schemaType(s)}
		for _, p := range slices.Sorted(maps.Keys(s.Properties)) {
			ps := s.Properties[p]
			rs.Props = append(rs.Props, refProp{Name: p, Type: schemaType(ps), Required: slices.Contains(s.Required, p), Description: ps.Description})
		}
		page.Schemas = append(page.Schemas, rs)
	}
	var b bytes.Buffer
	if err := referenceTemplate.Execute(&b, page); err != nil {
		return nil, errs.E("storefront.renderReference", err)
	}
	return b.Bytes(), nil
}

func contentOf(c map[string]*huma.MediaType) []refContent {
	var out []refContent
	for _, media := range slices.Sorted(maps.Keys(c)) {
		out = append(out, refContent{Media: media, Type: schemaType(c[media].Schema)})
	}
	return out
}

// authText describes an operation's security requirements.
func authText(sec []map[string][]string) string {
	if len(sec) == 0 {
		return "none"
	}
	var alts []string
	for _, req := range sec {
		switch {
		case len(req) == 0:
			alts = append(alts, "none")
		case req["session"] != nil:
			alts = append(alts, "session cookie ("+SessionCookie+")")
		case req["cart"] != nil:
			alts = append(alts, "anonymous cart cookie ("+CartCookie+")")
		case req["partnerKey"] != nil:
			alts = append(alts, "partner key (Authorization: Bearer <key>)")
		}
	}
	return strings.Join(alts, ", or ")
}

// schemaType describes s in a line of HTML, linking to named schemas.
func schemaType(s *huma.Schema) template.HTML {
	if s == nil {
		return "any"
	}
	esc := template.HTMLEscapeString
	switch {
	case s.Ref != "":
		name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
		return template.HTML(`<a href="#schema-` + esc(name) + `">` + esc(name) + `</a>`)
	case len(s.AnyOf) > 0:
		var alts []string
		for _, a := range s.AnyOf {
			alts = append(alts, string(schemaType(a)))
		}
		return template.HTML(strings.Join(alts, " or "))
	}
	t := esc(s.Type)
	if t == "" {
		t = "any"
	}
	switch s.Type {
	case "array":
		t = "array of " + string(schemaType(s.Items))
	case "object":
		if ap, ok := s.AdditionalProperties.(*huma.Schema); ok && len(s.Properties) == 0 {
			t = "map of string to " + string(schemaType(ap))
		}
	}
	if s.Format != "" {
		t += " (" + esc(s.Format) + ")"
	}
	if s.Nullable {
		t += " or null"
	}
	if len(s.Enum) > 0 {
		var vs []string
		for _, v := range s.Enum {
			vs = append(vs, esc(fmt.Sprint(v)))
		}
		t += ": one of " + strings.Join(vs, ", ")
	}
	return template.HTML(t)
}
