package checkout

import (
	"io"
	"net/http"

	"github.com/globomantics/globomantics/internal/platform/errs"
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
//	POST orders     Idempotency-Key header, body {customer, request};
//	                201 with the Result when confirmed, 202 while pending.
//	GET  checkouts  ?user_id=&key=: the Result of that checkout.
//	POST quotes     body QuoteRequest: the Quote (changes nothing).
func NewHandler(api API) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+Prefix+"quotes", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var b QuoteRequest
		if err := httpx.Decode(r, &b); err != nil {
			return err
		}
		q, err := api.QuoteOrder(r.Context(), b)
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		httpx.WriteJSON(w, http.StatusOK, q)
		return nil
	}))
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
	mux.Handle("GET "+Prefix+"checkouts", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		q, err := httpx.Query(r)
		if err != nil {
			return err
		}
		res, err := api.Checkout(r.Context(), q.Get("user_id"), q.Get("key"))
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		httpx.WriteJSON(w, http.StatusOK, res)
		return nil
	}))
	mux.HandleFunc(Prefix, httpx.NotFound)
	return mux
}

// NewAdminHandler serves the operator's view of s under
// /svc/checkout/v1/admin/ (guarded, like all of /svc/, by the service
// credentials):
//
//	GET admin/faults           the fault rules in force (text)
//	PUT admin/faults           replace them (body: rules, see package fault)
//	GET admin/sagas/{id}       a saga's state and step history
func NewAdminHandler(s *Service) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"admin/faults", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(s.faults.String() + "\n"))
	})
	mux.Handle("PUT "+Prefix+"admin/faults", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		if !s.faultsOn {
			return errs.E(errs.Conflict, errs.Msg("fault injection is off in this process; start it with --fault-injection"))
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, 4097))
		if err != nil {
			return errs.E(errs.BadRequest, err)
		}
		if len(b) > 4096 {
			return errs.E(errs.TooLarge, errs.Msg("fault rules are limited to 4096 bytes"))
		}
		if err := s.faults.Set(string(b)); err != nil {
			return err
		}
		s.log.Warn("fault rules changed", "rules", s.faults.String())
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
	mux.Handle("GET "+Prefix+"admin/sagas/{id}", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		v, err := s.Inspect(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		httpx.WriteJSON(w, http.StatusOK, v)
		return nil
	}))
	return mux
}
