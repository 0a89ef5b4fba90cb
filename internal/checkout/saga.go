package checkout

import (
	"context"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/shipping"
)

// The states of a saga in the log. Running and compensating sagas are
// driven by whichever instance holds their lease; the other two are final.
const (
	SagaRunning      = "running"      // moving forward, Step is the next step to do
	SagaCompensating = "compensating" // rolling back, Step is the next step to undo
	SagaConfirmed    = "confirmed"
	SagaCancelled    = "cancelled"
)

// Saga is one checkout in the saga log: which step it is at, how often that
// step was tried and until when it may be, who drives it (lease and epoch)
// and what the steps have learnt so far (Data).
type Saga struct {
	ID          string // the order id: a checkout places one order
	UserID      string
	Key         string // the customer's Idempotency-Key
	RequestHash string
	State       string // Saga*
	Step        int    // index into steps
	Attempts    int    // tries of Step so far
	NextAt      time.Time
	Deadline    time.Time // when Step gives up (before the pivot)
	// Epoch is the fencing token: every claim of the lease increments it,
	// and every write of a driver names the epoch it holds, so a driver
	// that lost its lease (paused, partitioned) can no longer write.
	Epoch      int64
	Owner      string
	LeaseUntil time.Time
	Version    int64 // increments with every write
	Data       Data
	Failure    *Failure // why it was cancelled
	Retryable  bool     // cancelled after a transient failure, all undone: the key may run again
	Callback   CallbackStatus
	CreatedAt  time.Time
	UpdatedAt  time.Time
	ExpiresAt  time.Time // when the idempotency key is forgotten (terminal sagas only)
}

// Terminal reports whether the saga has ended.
func (s *Saga) Terminal() bool { return s.State == SagaConfirmed || s.State == SagaCancelled }

// Data is what a saga carries from step to step. The card number never is:
// it lives only in the memory of the instance that accepted the checkout
// (see the authorize step).
type Data struct {
	Email        string             `json:"email"`
	Address      shipping.Address   `json:"address"`
	Card4        string             `json:"card4,omitempty"`
	CartVersion  int64              `json:"cart_version,omitempty"`
	Items        []order.Item       `json:"items,omitempty"`
	Lines        []catalog.Line     `json:"lines,omitempty"`
	Units        int                `json:"units,omitempty"`
	ShippingCost money.Money        `json:"shipping_cost"`
	Total        money.Money        `json:"total"`
	PaymentID    string             `json:"payment_id,omitempty"`
	Payment      order.PaymentInfo  `json:"payment"`
	Shipment     order.ShipmentInfo `json:"shipment"`
	Reason       string             `json:"reason,omitempty"` // why it is being rolled back, for the order
	OrderCreated bool               `json:"order_created,omitempty"`
	// OrderNumber is the number the order service gave the order, which
	// the customer knows it by.
	OrderNumber string `json:"order_number,omitempty"`
	// Traceparent is the W3C trace context of the request that placed the
	// order, for the saga's spans (observe.go).
	Traceparent string `json:"traceparent,omitempty"`
}

// StepRecord is one line of a saga's history: a step done or undone, or a
// try that failed.
type StepRecord struct {
	SagaID  string    `json:"-"`
	Seq     int64     `json:"seq"` // Version*MaxRecordsPerWrite + its place in the write
	Step    string    `json:"step"`
	Outcome string    `json:"outcome"` // "started", "done", "undone", "retry", "failed", "claimed"
	Detail  string    `json:"detail,omitempty"`
	Epoch   int64     `json:"epoch"`
	At      time.Time `json:"at"`
}

// MaxRecordsPerWrite bounds the history records one Save appends.
const MaxRecordsPerWrite = 16

// Claim is a saga whose lease has run out, as found by recovery.
type Claim struct {
	ID    string
	Epoch int64
}

// Store is the saga log. Every write but Create is fenced by the epoch
// (and Save also by the version): errs.Conflict when the saga has moved on
// without the writer, who must stop driving it.
type Store interface {
	// Create records s at version 1 and returns it with created=true, or,
	// if the customer has a saga under s.Key, changes nothing and returns
	// that one with created=false.
	Create(ctx context.Context, s Saga) (stored Saga, created bool, err error)
	// Get returns the saga of userID under key; errs.NotFound.
	Get(ctx context.Context, userID, key string) (Saga, error)
	// Load returns the saga with id; errs.NotFound.
	Load(ctx context.Context, id string) (Saga, error)
	// Save writes s over the stored saga if the stored one has s.Epoch and
	// s.Version, and appends recs (at most MaxRecordsPerWrite) to its
	// history, in one transaction; on success s.Version is incremented.
	// errs.Conflict if fenced.
	Save(ctx context.Context, s *Saga, recs ...StepRecord) error
	// Renew sets the lease of the driver holding epoch to until (the zero
	// time hands the saga over to any instance at once); errs.Conflict if
	// it no longer holds it.
	Renew(ctx context.Context, id string, epoch int64, until time.Time) error
	// Expired returns up to limit unfinished sagas whose lease ran out
	// before now, on every node.
	Expired(ctx context.Context, now time.Time, limit int) ([]Claim, error)
	// Claim takes the lease of a saga found by Expired: epoch+1, owner,
	// lease until; false if another instance claimed it first or its
	// driver renewed it.
	Claim(ctx context.Context, c Claim, owner string, now, until time.Time) (bool, error)
	// Restart replaces the cancelled, retryable saga of s.UserID under
	// s.Key by s (a new id, epoch 1), stored at version 1, and reports
	// whether this call did.
	Restart(ctx context.Context, s Saga) (bool, error)
	// History returns a saga's step records, oldest first.
	History(ctx context.Context, id string) ([]StepRecord, error)
	// DueCallbacks returns up to limit sagas whose callback is pending
	// and due at now.
	DueCallbacks(ctx context.Context, now time.Time, limit int) ([]Saga, error)
	// ClaimCallback pushes a due callback's next try to until, if it is
	// still due as read (next), so that one instance delivers it.
	ClaimCallback(ctx context.Context, id string, next, until time.Time) (bool, error)
	// SaveCallback records how a callback delivery went.
	SaveCallback(ctx context.Context, id string, cb CallbackStatus) error
	// Purge deletes finished sagas whose key expired before now (and
	// whose callback is not pending), with their history, up to limit on
	// each node; returns how many.
	Purge(ctx context.Context, now time.Time, limit int) (int, error)
}
