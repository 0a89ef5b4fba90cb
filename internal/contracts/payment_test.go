package contracts_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/contracts"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/payment/paymentdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// PaymentCaptured's consumer and its decoding struct
// (analytics.Service.Handle).
func init() {
	decoders[contracts.SubjectPaymentCaptured] = append(decoders[contracts.SubjectPaymentCaptured],
		decoder{"analytics consumer (analytics.Service.Handle)", reflect.TypeFor[analytics.PaymentCaptured]()})
}

// TestPaymentSubjects checks that this package spells PaymentCaptured's
// subject as its producer and its consumer do, and that the consumer
// subscribes to registered subjects only.
func TestPaymentSubjects(t *testing.T) {
	for _, p := range [][2]string{
		{contracts.SubjectPaymentCaptured, payment.SubjectPaymentCaptured},
		{contracts.SubjectPaymentCaptured, analytics.SubjectPaymentCaptured},
	} {
		if p[0] != p[1] {
			t.Errorf("contracts spells %q, the producer or consumer %q", p[0], p[1])
		}
	}
	r := registry(t)
	for _, s := range analytics.PaymentSubjects {
		if _, err := r.Schema(s); err != nil {
			t.Errorf("the analytics consumer subscribes to %s: %v", s, err)
		}
	}
}

// paymentPayloads runs the real producer of PaymentCaptured (the payment
// service's Capture over its store) on backend b and adds what it wrote to
// its outbox to out: two captures, one of them repeated (which writes
// nothing more).
func paymentPayloads(t *testing.T, b testenv.Backend, out map[string][][]byte) {
	t.Helper()
	ctx := context.Background()
	db := b.Open(t)
	st, err := paymentdb.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	svc := payment.NewService(st, clock.NewFake(t0))
	card := payment.Card{Number: payment.TestCardOK, ExpMonth: 12, ExpYear: t0.Year() + 2, CVC: "123"}
	for i, cents := range []int64{2599, 1} {
		p, err := svc.Authorize(ctx, payment.AuthorizeRequest{OrderID: "ord_pay" + string(rune('1'+i)), Amount: money.USD(cents), Card: card})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := svc.Capture(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	rows := outboxRows(t, db)
	if len(rows) != 2 {
		t.Errorf("two payments captured (each twice) wrote %d outbox rows, want 2", len(rows))
	}
	for _, r := range rows {
		out[r.subject] = append(out[r.subject], r.payload)
	}
}
