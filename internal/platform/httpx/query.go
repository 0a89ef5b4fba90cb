package httpx

import (
	"net/http"
	"net/url"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Query parses the request's query string strictly: unlike r.URL.Query,
// which drops pairs it cannot decode (so ?page_token=%%%% would silently give
// the first page), a query string that does not parse is an errs.BadRequest
// error, which handlers answer with 400 problem+json.
func Query(r *http.Request) (url.Values, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errs.E("httpx.Query", errs.BadRequest, errs.Msg("the query string is not valid"), err)
	}
	return v, nil
}
