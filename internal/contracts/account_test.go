package contracts_test

import (
	"context"
	"encoding/json"
	"net/mail"
	"reflect"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/account/accountdb"
	"github.com/globomantics/globomantics/internal/contracts"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	mailworker "github.com/globomantics/globomantics/internal/worker/mail"
)

// PasswordResetRequested's consumer and its decoding struct
// (mail.Worker.HandleAccount).
func init() {
	decoders[contracts.SubjectPasswordResetRequested] = append(decoders[contracts.SubjectPasswordResetRequested],
		decoder{"mail worker (mail.Worker.HandleAccount)", reflect.TypeFor[account.PasswordResetRequested]()})
}

// TestAccountSubjects checks that this package spells the password reset
// job's subject as its producer does, and that the mail worker subscribes
// to registered subjects only.
func TestAccountSubjects(t *testing.T) {
	if contracts.SubjectPasswordResetRequested != account.SubjectPasswordResetRequested {
		t.Errorf("contracts spells %q, the producer %q", contracts.SubjectPasswordResetRequested, account.SubjectPasswordResetRequested)
	}
	r := registry(t)
	for _, s := range mailworker.AccountSubjects {
		if _, err := r.Schema(s); err != nil {
			t.Errorf("the mail worker subscribes to %s: %v", s, err)
		}
	}
}

// TestAccountProducerConforms runs the real producer (the account
// service's RequestPasswordReset over its store) on SQLite and PostgreSQL,
// validates what it wrote to the outbox, decodes it with the consumer's
// struct, checks the fields it reads arrived, and has the mail worker
// compose its message from it.
func TestAccountProducerConforms(t *testing.T) {
	r := registry(t)
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			out := map[string][][]byte{}
			accountPayloads(t, b, out)
			if n := len(out[contracts.SubjectPasswordResetRequested]); n != 1 {
				t.Fatalf("%d reset jobs, want 1 (none for the unknown address)", n)
			}
			row := outboxRow{subject: contracts.SubjectPasswordResetRequested, payload: out[contracts.SubjectPasswordResetRequested][0]}
			if err := r.Validate(row.subject, row.payload); err != nil {
				t.Errorf("%v\n%s", err, row.payload)
			}
			var doc any
			if err := json.Unmarshal(row.payload, &doc); err != nil {
				t.Fatal(err)
			}
			for _, dec := range decoders[row.subject] {
				if err := json.Unmarshal(row.payload, reflect.New(dec.typ).Interface()); err != nil {
					t.Errorf("%s cannot decode: %v", dec.consumer, err)
				}
				for _, need := range needsOf(t, row.subject, dec.consumer) {
					if !present(doc, strings.Split(need, ".")) {
						t.Errorf("%s reads %s, which is missing from %s", dec.consumer, need, row.payload)
					}
				}
			}
			var job account.PasswordResetRequested
			if err := json.Unmarshal(row.payload, &job); err != nil {
				t.Fatal(err)
			}
			msg, err := mailworker.ComposePasswordReset(&mail.Address{Name: "Globomantics", Address: "shop@globomantics.example"}, "https://shop.example", job)
			if err != nil {
				t.Fatalf("the mail worker cannot compose the message: %v", err)
			}
			if msg.To != "ada@example.com" {
				t.Errorf("message to %q", msg.To)
			}
		})
	}
}

// accountPayloads runs the real producer of PasswordResetRequested (the
// account service's RequestPasswordReset over its store) on backend b and
// adds what it wrote to its outbox to out: a reset for an account, and one
// for an address without one (which writes nothing). Each job's event id is
// its reset id.
func accountPayloads(t *testing.T, b testenv.Backend, out map[string][][]byte) {
	t.Helper()
	ctx := context.Background()
	db := b.Open(t)
	st, err := accountdb.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	svc := account.NewService(st, clock.NewFake(t0),
		account.WithArgonParams(account.ArgonParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}))
	if _, err := svc.Register(ctx, account.Registration{Email: "ada@example.com", Password: "password123", Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"ada@example.com", "nobody@example.com"} {
		if err := svc.RequestPasswordReset(ctx, email); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range outboxRows(t, db) {
		var job account.PasswordResetRequested
		if err := json.Unmarshal(r.payload, &job); err != nil || job.ResetID != r.id {
			t.Errorf("outbox row %s: reset id %q, %v; want the event id", r.id, job.ResetID, err)
		}
		out[r.subject] = append(out[r.subject], r.payload)
	}
}
