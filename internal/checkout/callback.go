package checkout

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/retry"
)

// Callback delivery states.
const (
	CallbackPending   = "pending"
	CallbackDelivered = "delivered"
	CallbackFailed    = "failed" // gave up after callbackTries
)

// Headers of a callback request.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of
	// "<t>.<body>">", as Stripe signs its webhooks: the receiver recomputes
	// it with the shared secret and rejects old timestamps.
	SignatureHeader = "Globo-Signature"
	// DeliveryHeader identifies the delivery ("<checkout id>/<try>"): a
	// receiver that sees the same checkout twice acts once.
	DeliveryHeader = "Globo-Delivery"
)

// callbackTries is how many times a callback is tried before it is marked
// failed: with callbackRetry, about 11 hours.
const callbackTries = 15

var callbackRetry = retry.Policy{Base: 2 * time.Second, Max: time.Hour}

// CallbackEvent is the body of a callback: the checkout's final state.
type CallbackEvent struct {
	Type    string      `json:"type"` // checkout.confirmed or checkout.cancelled
	Key     string      `json:"key"`
	OrderID string      `json:"order_id"`
	State   string      `json:"state"`
	Total   money.Money `json:"total"`
	Error   *Failure    `json:"error,omitempty"`
	At      time.Time   `json:"at"`
}

// Sign returns the SignatureHeader value for body sent at t with secret.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// callbackLoop delivers due callbacks until ctx ends.
func (s *Service) callbackLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		s.deliverDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// deliverDue tries every callback that is due, each claimed first so that
// one instance delivers it; it returns how many it tried.
func (s *Service) deliverDue(ctx context.Context) int {
	now := s.clk.Now()
	due, err := s.store.DueCallbacks(ctx, now, 50)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("looking for due callbacks failed", "err", err)
		}
		return 0
	}
	n := 0
	for _, g := range due {
		ok, err := s.store.ClaimCallback(ctx, g.ID, g.Callback.NextAt, now.Add(time.Minute))
		if err != nil || !ok {
			continue
		}
		n++
		cb := g.Callback
		cb.Attempts++
		derr := s.deliver(ctx, g, cb.Attempts)
		now := s.clk.Now()
		switch {
		case derr == nil:
			cb.State, cb.LastError, cb.NextAt = CallbackDelivered, "", time.Time{}
		case cb.Attempts >= callbackTries:
			cb.State, cb.LastError, cb.NextAt = CallbackFailed, derr.Error(), time.Time{}
			s.log.Warn("checkout callback given up", "order_id", g.ID, "url", cb.URL, "err", derr)
		default:
			cb.LastError, cb.NextAt = derr.Error(), now.Add(callbackRetry.Backoff(cb.Attempts))
		}
		if err := s.store.SaveCallback(ctx, g.ID, cb); err != nil && ctx.Err() == nil {
			s.log.Warn("callback state not saved", "order_id", g.ID, "err", err)
		}
	}
	return n
}

// deliver POSTs saga g's final state to its callback URL, signed.
func (s *Service) deliver(ctx context.Context, g Saga, try int) error {
	ev := CallbackEvent{Type: "checkout." + g.State, Key: g.Key, OrderID: g.ID, State: g.State,
		Total: g.Data.Total, Error: g.Failure, At: g.UpdatedAt}
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.Callback.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Globomantics-Callback/1")
	req.Header.Set(SignatureHeader, Sign(s.secret, body, s.clk.Now()))
	req.Header.Set(DeliveryHeader, g.ID+"/"+strconv.Itoa(try))
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("callback answered %s", resp.Status)
	}
	return nil
}
