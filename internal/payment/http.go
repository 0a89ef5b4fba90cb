package payment

import (
	"context"
	"net/http"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// NewHandler serves api's REST API:
//
//	POST /svc/payment/v1/authorizations          AuthorizeRequest → Payment
//	     (Idempotency-Key, when sent, must equal the body's order_id)
//	POST /svc/payment/v1/payments/{id}/capture   → Payment
//	POST /svc/payment/v1/payments/{id}/void      → Payment
//	POST /svc/payment/v1/payments/{id}/refund    → Payment
//	GET  /svc/payment/v1/payments/{id}           → Payment
//	GET  /svc/payment/v1/orders/{id}/payment     → Payment of the order
//	POST /svc/payment/v1/orders/{id}/void        → the order's Payment, voided
//	     (or the cancellation recorded for an order without one)
//	GET  /svc/payment/v1/admin/audit             → Audit of the whole ledger
//	     (served when api is also an Auditor, as *Service is)
//
// Every POST is idempotent, so clients may retry it (Authorize is keyed by
// its order id, sent as Idempotency-Key; the others by the payment or order
// in their path).
func NewHandler(api API) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /svc/payment/v1/authorizations", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var req AuthorizeRequest
		if err := httpx.Decode(r, &req); err != nil {
			return err
		}
		if k := r.Header.Get("Idempotency-Key"); k != "" && k != req.OrderID {
			return errs.E("payment.Authorize", errs.BadRequest, errs.Msg("Idempotency-Key must equal order_id"))
		}
		p, err := api.Authorize(r.Context(), req)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, p)
		return nil
	}))
	transition := func(fn func(ctx context.Context, id string) (Payment, error)) http.Handler {
		return httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
			p, err := fn(r.Context(), r.PathValue("id"))
			if err != nil {
				return err
			}
			httpx.WriteJSON(w, http.StatusOK, p)
			return nil
		})
	}
	mux.Handle("POST /svc/payment/v1/payments/{id}/capture", transition(api.Capture))
	mux.Handle("POST /svc/payment/v1/payments/{id}/void", transition(api.Void))
	mux.Handle("POST /svc/payment/v1/payments/{id}/refund", transition(api.Refund))
	mux.Handle("GET /svc/payment/v1/payments/{id}", transition(api.GetPayment))
	mux.Handle("GET /svc/payment/v1/orders/{id}/payment", transition(api.PaymentForOrder))
	mux.Handle("POST /svc/payment/v1/orders/{id}/void", transition(api.VoidForOrder))
	if a, ok := api.(Auditor); ok {
		mux.Handle("GET /svc/payment/v1/admin/audit", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
			audit, err := a.Audit(r.Context())
			if err != nil {
				return err
			}
			httpx.WriteJSON(w, http.StatusOK, audit)
			return nil
		}))
	}
	mux.HandleFunc("/", httpx.NotFound)
	return mux
}
