package contracts

// Subjects of the jobs the catalog and the order service hand to workers, on
// the work-queue stream GLOBO_JOBS (each job goes to one worker).
const (
	SubjectThumbnailRequested = "globo_jobs.thumbnail"
	SubjectEmailRequested     = "globo_jobs.email"
)

// jobContracts are the thumbnail and e-mail jobs. Kept apart from
// Contracts' list so that the jobs work touches that list in one line.
func jobContracts() []Contract {
	return []Contract{
		{
			Subject: SubjectThumbnailRequested, Name: "ThumbnailRequested", Version: 1, File: "globo_jobs.thumbnail.v1.json",
			Producer: "catalog (catalogdb.CreateProduct, through the outbox, with ItemListed)",
			Consumers: []Consumer{
				{Name: "thumbnail worker (thumbnail.Worker.Handle)", Needs: []string{"product_id", "image_key"}},
			},
		},
		{
			Subject: SubjectEmailRequested, Name: "EmailRequested", Version: 1, File: "globo_jobs.email.v1.json",
			Producer: "order (order.Service.Confirm and Cancel via orderdb's Update, through the outbox, with OrderPlaced or OrderCancelled)",
			Consumers: []Consumer{
				{Name: "mail worker (mail.Worker.Handle)", Needs: []string{
					"kind", "order_id", "to",
					"order.id", "order.email", "order.items[].name", "order.items[].quantity",
					"order.items[].unit_price.amount", "order.items[].unit_price.currency",
					"order.items[].line_total.amount", "order.items[].line_total.currency",
					"order.subtotal.amount", "order.subtotal.currency",
					"order.shipping_cost.amount", "order.shipping_cost.currency",
					"order.total.amount", "order.total.currency",
					"order.shipping_address.name", "order.shipping_address.line1", "order.shipping_address.city",
					"order.shipping_address.postal_code", "order.shipping_address.country",
					"order.payment.status", "order.created_at", "order.updated_at",
				}},
			},
		},
	}
}
