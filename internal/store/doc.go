// Package store keeps proxypool's state in one SQLite file: upstreams and
// their health, the sources that list them, bounded check history, source
// reputation, Tor relays and a version counter the gateway watches.
//
// Open gives a writer: the schema is migrated at open, the file is in WAL
// mode, and every write goes through one goroutine that batches probe
// results into transactions (flush every BatchSize results or
// FlushInterval), so thousands of results a second cost a handful of
// fsyncs. Reads use a separate read-only connection pool. OpenReadOnly
// gives a reader for tools (proxypoolctl --db) that never creates, migrates
// or writes anything and works while a daemon writes.
//
// The package knows nothing about probing, fetching or serving: it stores
// upstream vocabulary values and applies upstream.Policy to check results.
package store
