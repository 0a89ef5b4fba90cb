package shipping

import (
	"net/http"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
)

// QuoteRequest is the body of POST /svc/shipping/v1/quotes.
type QuoteRequest struct {
	Address Address `json:"address"`
	Items   int     `json:"items"`
}

// QuoteResponse is the answer to a QuoteRequest.
type QuoteResponse struct {
	Cost money.Money `json:"cost"`
}

// CreateShipmentRequest is the body of POST /svc/shipping/v1/shipments.
type CreateShipmentRequest struct {
	OrderID string  `json:"order_id"`
	Address Address `json:"address"`
	Items   int     `json:"items"`
}

// NewHandler serves api's REST API:
//
//	POST /svc/shipping/v1/quotes                 QuoteRequest → QuoteResponse
//	POST /svc/shipping/v1/shipments              CreateShipmentRequest → Shipment
//	     (Idempotency-Key, when sent, must equal the body's order_id)
//	POST /svc/shipping/v1/shipments/{id}/cancel  → Shipment
//	POST /svc/shipping/v1/orders/{id}/cancel     → Shipment (see API.CancelForOrder)
//	GET  /svc/shipping/v1/shipments/{id}         → Shipment
//
// Every POST is idempotent (a quote changes nothing), so clients may retry.
func NewHandler(api API) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /svc/shipping/v1/quotes", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var req QuoteRequest
		if err := httpx.Decode(r, &req); err != nil {
			return err
		}
		cost, err := api.Quote(r.Context(), req.Address, req.Items)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, QuoteResponse{Cost: cost})
		return nil
	}))
	mux.Handle("POST /svc/shipping/v1/shipments", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var req CreateShipmentRequest
		if err := httpx.Decode(r, &req); err != nil {
			return err
		}
		if k := r.Header.Get("Idempotency-Key"); k != "" && k != req.OrderID {
			return errs.E("shipping.CreateShipment", errs.BadRequest, errs.Msg("Idempotency-Key must equal order_id"))
		}
		sh, err := api.CreateShipment(r.Context(), req.OrderID, req.Address, req.Items)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, sh)
		return nil
	}))
	mux.Handle("POST /svc/shipping/v1/shipments/{id}/cancel", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		sh, err := api.CancelShipment(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, sh)
		return nil
	}))
	mux.Handle("POST /svc/shipping/v1/orders/{id}/cancel", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		sh, err := api.CancelForOrder(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, sh)
		return nil
	}))
	mux.Handle("GET /svc/shipping/v1/shipments/{id}", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		sh, err := api.GetShipment(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, sh)
		return nil
	}))
	mux.HandleFunc("/", httpx.NotFound)
	return mux
}
