// Package upstream is proxypool's shared vocabulary: what an upstream is,
// how its stable identity is computed, its health state, the result of one
// check, and the per-source bookkeeping records. It does no I/O and imports
// nothing of proxypool's own, so every other package can depend on it.
package upstream
