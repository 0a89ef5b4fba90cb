// Package browser holds the storefront's browser tests: journey.mjs drives
// the real shop in Debian's chromium with playwright-core and axe-core (npm
// packages pinned in package.json, installed by `npm ci --prefix e2e/browser`),
// and browser_test.go builds and starts the shop and runs it.
package browser
