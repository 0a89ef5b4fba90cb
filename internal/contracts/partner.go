package contracts

// partnerContracts are the messages of the partner integration: the
// catalog's ThumbnailsReady (an item is ready, so its partner is told), the
// partner service's webhook jobs, and the partner service as a consumer of
// OrderPlaced (an item sold). Kept apart from Contracts' list so that the
// partner work touches that list in one line.
func partnerContracts() []Contract {
	return []Contract{
		{
			Subject: SubjectThumbnailsReady, Name: "ThumbnailsReady", Version: 1, File: "catalog.thumbnails_ready.v1.json",
			Producer: "catalog (catalogdb.SetThumbnails, through the outbox, when the thumbnails changed)",
			Consumers: []Consumer{
				{Name: "partner service (partner.Service.Handle)", Needs: []string{"product_id", "thumbnails", "ready_at"}},
			},
		},
		{
			Subject: SubjectWebhookRequested, Name: "WebhookRequested", Version: 1, File: "globo_jobs.webhook.v1.json",
			Producer: "partner (partnerdb, through the outbox, with the delivery log's row)",
			Consumers: []Consumer{
				{Name: "webhooks worker (webhooks.Worker.Handle)", Needs: []string{"delivery_id"}},
			},
		},
	}
}

// partnerOrderPlaced is the partner service as a consumer of
// OrderPlaced: it records the sales of its partners' items and tells them.
var partnerOrderPlaced = Consumer{Name: "partner service (partner.Service.Handle)", Needs: []string{
	"order.id", "order.items[].product_id", "order.items[].quantity",
	"order.items[].line_total.amount", "order.items[].line_total.currency", "order.updated_at",
}}
