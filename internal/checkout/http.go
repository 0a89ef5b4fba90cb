package checkout

import (
	"net/http"

	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Prefix is the path under which the checkout service's REST API is served.
const Prefix = "/svc/checkout/v1/"

// placeBody is the body of POST orders.
type placeBody struct {
	Customer Customer `json:"customer"`
	Request  Request  `json:"request"`
}

// NewHandler serves api's REST API under /svc/checkout/v1/:
//
//	POST orders  Idempotency-Key header, body {customer, request};
//	             201 with the Result when done, 202 while another request
//	             with the same key is still placing the order.
func NewHandler(api API) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+Prefix+"orders", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var b placeBody
		if err := httpx.Decode(r, &b); err != nil {
			return err
		}
		res, err := api.PlaceOrder(r.Context(), b.Customer, r.Header.Get("Idempotency-Key"), b.Request)
		if err != nil {
			return err
		}
		status := http.StatusCreated
		if !res.Done {
			status = http.StatusAccepted
		}
		w.Header().Set("Cache-Control", "no-store")
		httpx.WriteJSON(w, status, res)
		return nil
	}))
	mux.HandleFunc(Prefix, httpx.NotFound)
	return mux
}
