package contracts

// SubjectPasswordResetRequested is the account service's password reset
// e-mail job (work-queue stream GLOBO_JOBS), spelled as
// account.SubjectPasswordResetRequested (a test checks).
const SubjectPasswordResetRequested = "globo_jobs.password_reset"

// accountContracts are the account service's jobs. Kept apart from
// Contracts' list so that the account work touches that list in one line.
func accountContracts() []Contract {
	return []Contract{
		{
			Subject: SubjectPasswordResetRequested, Name: "PasswordResetRequested", Version: 1, File: "globo_jobs.password_reset.v1.json",
			Producer: "account (account.Service.RequestPasswordReset via accountdb's CreatePasswordReset, through the outbox, with the reset link's row)",
			Consumers: []Consumer{
				{Name: "mail worker (mail.Worker.HandleAccount)", Needs: []string{"reset_id", "to", "name", "token", "expires_at", "requested_at"}},
			},
		},
	}
}
