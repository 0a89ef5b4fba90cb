package contracts

// SubjectPaymentCaptured is the payment service's PaymentCaptured (stream
// GLOBO), spelled as payment.SubjectPaymentCaptured (a test checks).
const SubjectPaymentCaptured = "globo.payment.captured"

// paymentContracts are the payment service's events. Kept apart from
// Contracts' list so that the payment work touches that list in one line.
func paymentContracts() []Contract {
	return []Contract{
		{
			Subject: SubjectPaymentCaptured, Name: "PaymentCaptured", Version: 1, File: "payment.captured.v1.json",
			Producer: "payment (payment.Service.Capture via paymentdb's Update, through the outbox, with the capture's ledger entry)",
			Consumers: []Consumer{
				{Name: "analytics consumer (analytics.Service.Handle)", Needs: []string{"amount.amount", "amount.currency", "captured_at"}},
			},
		},
	}
}
