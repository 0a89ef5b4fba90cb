package openapitest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const doc = `{
  "openapi": "3.1.0",
  "info": {"title": "t", "version": "1"},
  "paths": {
    "/api/v1/things/{id}": {
      "get": {
        "responses": {
          "200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
          "304": {"description": "not modified"},
          "404": {"description": "nf", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        }
      },
      "delete": {"responses": {"204": {"description": "gone"}}}
    }
  },
  "components": {"schemas": {
    "Thing": {"type": "object", "additionalProperties": false, "required": ["id", "n", "at"],
      "properties": {"id": {"type": "string"}, "n": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}}},
    "Problem": {"type": "object", "required": ["title", "status"], "properties": {"title": {"type": "string"}, "status": {"type": "integer"}}}
  }}
}`

func TestCheck(t *testing.T) {
	c, err := New([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	jsonH := http.Header{"Content-Type": {"application/json"}}
	problemH := http.Header{"Content-Type": {"application/problem+json"}}
	for _, tc := range []struct {
		name, method, path string
		status             int
		header             http.Header
		body, wantErr      string
	}{
		{"valid", "GET", "/api/v1/things/a", 200, jsonH, `{"id":"a","n":1,"at":"2025-01-02T03:04:05Z"}`, ""},
		{"head", "HEAD", "/api/v1/things/a", 200, jsonH, ``, ""},
		{"not modified", "GET", "/api/v1/things/a", 304, http.Header{}, ``, ""},
		{"problem", "GET", "/api/v1/things/a", 404, problemH, `{"title":"Not Found","status":404}`, ""},
		{"no content", "DELETE", "/api/v1/things/a", 204, http.Header{}, ``, ""},
		{"extra field", "GET", "/api/v1/things/a", 200, jsonH, `{"id":"a","n":1,"at":"2025-01-02T03:04:05Z","x":1}`, "does not match"},
		{"wrong type", "GET", "/api/v1/things/a", 200, jsonH, `{"id":"a","n":"1","at":"2025-01-02T03:04:05Z"}`, "does not match"},
		{"bad date", "GET", "/api/v1/things/a", 200, jsonH, `{"id":"a","n":1,"at":"yesterday"}`, "does not match"},
		{"missing field", "GET", "/api/v1/things/a", 200, jsonH, `{"id":"a","n":1}`, "does not match"},
		{"not json", "GET", "/api/v1/things/a", 200, jsonH, `<html>`, "not JSON"},
		{"undocumented status", "GET", "/api/v1/things/a", 500, problemH, `{"title":"x","status":500}`, "status 500 is not documented"},
		{"undocumented media", "GET", "/api/v1/things/a", 404, jsonH, `{"title":"x","status":404}`, "Content-Type application/json is not documented"},
		{"body where none", "DELETE", "/api/v1/things/a", 204, jsonH, `{}`, "documented as none"},
		{"unknown path", "GET", "/api/v1/nothing", 404, problemH, `{}`, "no such operation"},
		{"unknown method", "PUT", "/api/v1/things/a", 405, problemH, `{}`, "no such operation"},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		err := c.Check(req, tc.status, tc.header, []byte(tc.body))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestNewRefusesOpenAPI30(t *testing.T) {
	if _, err := New([]byte(strings.Replace(doc, `"3.1.0"`, `"3.0.3"`, 1))); err == nil {
		t.Fatal("a 3.0 document was taken for a 3.1 contract")
	}
}
