package search

import (
	"net/http"

	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// NewHandler serves api's REST API:
//
//	GET /svc/search/v1/search?q=…&sort=…&category=…&min_price=…&max_price=…&page_size=…&page_token=…  → Result
//
// with the parameters ParseQuery reads; a bad one is a 400 problem+json.
func NewHandler(api API) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /svc/search/v1/search", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		v, err := httpx.Query(r)
		if err != nil {
			return err
		}
		q, err := ParseQuery(v)
		if err != nil {
			return err
		}
		p, err := page.Parse(v.Get("page_size"), v.Get("page_token"))
		if err != nil {
			return err
		}
		res, err := api.Search(r.Context(), q, p)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, res)
		return nil
	}))
	mux.HandleFunc("/", httpx.NotFound)
	return mux
}
