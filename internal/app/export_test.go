package app

// WebhookConcurrency is webhookConcurrency, for the tests of package app_test.
const WebhookConcurrency = webhookConcurrency
