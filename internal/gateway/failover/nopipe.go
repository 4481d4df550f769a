package failover

import (
	"sync"
	"time"
)

// NoPipeline remembers upstreams that stalled on a pipelined handshake
// although their probe said they pipeline, so the gateway stops paying a
// stall and a redial per tunnel for them. In memory only, bounded; an entry
// lasts until the probe could have rechecked the upstream (forget), after
// which the snapshot's Caps are believed again. The zero value is ready.
type NoPipeline struct {
	mu sync.Mutex
	m  map[string]time.Time // id → when it stalled
}

const (
	noPipelineMax    = 4096
	noPipelineForget = 30 * time.Minute
)

func (n *NoPipeline) add(id string, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = make(map[string]time.Time)
	}
	if len(n.m) >= noPipelineMax {
		for k, at := range n.m { // drop what expired; if nothing did, start over
			if now.Sub(at) >= noPipelineForget {
				delete(n.m, k)
			}
		}
		if len(n.m) >= noPipelineMax {
			clear(n.m)
		}
	}
	n.m[id] = now
}

func (n *NoPipeline) has(id string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	at, ok := n.m[id]
	if ok && now.Sub(at) >= noPipelineForget {
		delete(n.m, id)
		return false
	}
	return ok
}
