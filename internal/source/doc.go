// Package source fetches the upstream lists named in the config and hands
// their bytes to package parse, then writes what parsed into a Sink (the
// store) with one UpsertSource call per source.
//
// A source URL is one of:
//
//	file:///abs/path, file://./relative/path    read from disk
//	http://…, https://…                         fetched (GitHub raw files are plain URLs)
//	https://t.me/s/<channel>                    a public Telegram channel's web
//	                                            preview; share links are taken from
//	                                            the message texts, newest pages first
//
// Fetching is conditional (ETag/If-None-Match, Last-Modified/
// If-Modified-Since; file sources use size and mtime; Telegram sources a
// hash of the extracted text): an unchanged source reports NotModified and
// nothing is parsed or written, so nothing is lost. Bodies may be gzip
// (Content-Encoding or just gzip bytes). Every source has a timeout and a
// size cap; a fetch or parse failure is recorded against that source through
// the Sink and never stops the others. A body that parses to no upstream at
// all while the source listed some before is treated as a failure (an error
// page served with 200, a truncated file), so a broken upstream list never
// wipes what the source listed.
//
// The package does not schedule: the refresh timer or the daemon calls
// Refresh. It does not log per line; it returns one summary per source.
package source
