package payment

import (
	"context"
	"net/http"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Client is the payment service's API over HTTP. Every call is idempotent
// and may be retried on another instance.
type Client struct {
	c *httpx.Client
}

var (
	_ API     = (*Client)(nil)
	_ Auditor = (*Client)(nil)
)

// NewClient returns a client of the payment service reached through c.
func NewClient(c *httpx.Client) *Client { return &Client{c: c} }

const basePath = "/svc/payment/v1"

// Authorize calls POST /svc/payment/v1/authorizations with the order id as
// Idempotency-Key.
func (c *Client) Authorize(ctx context.Context, r AuthorizeRequest) (Payment, error) {
	var p Payment
	if err := c.c.Call(ctx, http.MethodPost, basePath+"/authorizations", r, &p, httpx.IdempotencyKey(r.OrderID)); err != nil {
		return Payment{}, err
	}
	return p, nil
}

// Capture calls POST /svc/payment/v1/payments/{id}/capture.
func (c *Client) Capture(ctx context.Context, id string) (Payment, error) {
	return c.transition(ctx, "payment.Capture", id, "capture")
}

// Void calls POST /svc/payment/v1/payments/{id}/void.
func (c *Client) Void(ctx context.Context, id string) (Payment, error) {
	return c.transition(ctx, "payment.Void", id, "void")
}

// Refund calls POST /svc/payment/v1/payments/{id}/refund.
func (c *Client) Refund(ctx context.Context, id string) (Payment, error) {
	return c.transition(ctx, "payment.Refund", id, "refund")
}

func (c *Client) transition(ctx context.Context, op, id, action string) (Payment, error) {
	if id == "" { // an empty path segment would not reach the handler
		return Payment{}, errs.E(op, errs.NotFound, errs.Msg("payment not found"))
	}
	var p Payment
	if err := c.c.Call(ctx, http.MethodPost, httpx.Path(basePath+"/payments", id)+"/"+action, nil, &p, httpx.Retryable()); err != nil {
		return Payment{}, err
	}
	return p, nil
}

// GetPayment calls GET /svc/payment/v1/payments/{id}.
func (c *Client) GetPayment(ctx context.Context, id string) (Payment, error) {
	if id == "" {
		return Payment{}, errs.E("payment.GetPayment", errs.NotFound, errs.Msg("payment not found"))
	}
	var p Payment
	if err := c.c.Call(ctx, http.MethodGet, httpx.Path(basePath+"/payments", id), nil, &p); err != nil {
		return Payment{}, err
	}
	return p, nil
}

// PaymentForOrder calls GET /svc/payment/v1/orders/{id}/payment.
func (c *Client) PaymentForOrder(ctx context.Context, orderID string) (Payment, error) {
	if orderID == "" {
		return Payment{}, errs.E("payment.PaymentForOrder", errs.NotFound, errs.Msg("payment not found"))
	}
	var p Payment
	if err := c.c.Call(ctx, http.MethodGet, httpx.Path(basePath+"/orders", orderID, "payment"), nil, &p); err != nil {
		return Payment{}, err
	}
	return p, nil
}

// VoidForOrder calls POST /svc/payment/v1/orders/{id}/void, which the
// server applies at most once, so the call is retried on failure.
// errs.Invalid for an empty order id, which is not sent.
func (c *Client) VoidForOrder(ctx context.Context, orderID string) (Payment, error) {
	if orderID == "" { // an empty path segment would not reach the handler
		return Payment{}, errs.E("payment.VoidForOrder", errs.Invalid, errs.Msg("order_id is required"))
	}
	var p Payment
	if err := c.c.Call(ctx, http.MethodPost, httpx.Path(basePath+"/orders", orderID, "void"), nil, &p, httpx.Retryable()); err != nil {
		return Payment{}, err
	}
	return p, nil
}

// Audit calls GET /svc/payment/v1/admin/audit.
func (c *Client) Audit(ctx context.Context) (Audit, error) {
	var a Audit
	if err := c.c.Call(ctx, http.MethodGet, basePath+"/admin/audit", nil, &a); err != nil {
		return Audit{}, err
	}
	return a, nil
}
