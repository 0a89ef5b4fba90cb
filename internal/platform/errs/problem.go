package errs

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type     string `json:"type,omitempty"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance,omitempty"`
}

// ProblemFor is the problem document for err; it never contains internal causes.
func ProblemFor(err error) Problem {
	k := KindOf(err)
	detail := Detail(err)
	if k == Other {
		detail = "An internal error occurred."
	}
	return Problem{Type: "about:blank", Title: k.Title(), Status: k.Status(), Detail: detail}
}

// WriteProblem writes err as application/problem+json with its mapped status,
// and a Retry-After header (whole seconds, rounded up) when err carries a
// retry hint (see RetryAfter).
func WriteProblem(w http.ResponseWriter, r *http.Request, err error) {
	p := ProblemFor(err)
	if r != nil {
		p.Instance = r.URL.Path
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	if d := RetryAfterOf(err); d > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// FromProblem turns a problem response from a peer service back into an error
// of the same kind and detail.
func FromProblem(op string, status int, body []byte) error {
	var p Problem
	_ = json.Unmarshal(body, &p)
	if p.Status == 0 {
		p.Status = status
	}
	k := KindForStatus(p.Status)
	if p.Detail == "" || k == Other {
		return E(op, k)
	}
	return E(op, k, Msg("%s", p.Detail))
}
