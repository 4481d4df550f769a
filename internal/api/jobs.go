package api

import (
	"sync"

	"github.com/proxypool/proxypool/internal/control"
)

// keepJobs bounds how many finished jobs GET /api/v1/jobs/{id} remembers.
const keepJobs = 256

// Job is a job's last reported progress.
type Job struct {
	ID    string `json:"id"`
	Done  uint32 `json:"done"`
	Total uint32 `json:"total"`
	// Ended: the job sent its last report. Complete: it ended with every
	// step done (a job that ended short reports Total lowered to Done,
	// below its largest total).
	Ended    bool `json:"ended"`
	Complete bool `json:"complete"`
	maxTotal uint32
}

// Jobs follows the manager's progress reports (Emit) for the API: each
// job's last state, and subscribers to the stream. Safe for concurrent
// use; Emit never blocks (a subscriber too slow to keep up loses the
// reports in between, never the last state GET shows).
type Jobs struct {
	mu    sync.Mutex
	jobs  map[string]*Job
	order []string // ids, oldest first, for eviction
	subs  map[chan Job]string
}

// NewJobs returns an empty job table.
func NewJobs() *Jobs {
	return &Jobs{jobs: map[string]*Job{}, subs: map[chan Job]string{}}
}

// Emit records one progress report; it is the manager's Options.Emit.
func (j *Jobs) Emit(p control.Progress) {
	j.mu.Lock()
	defer j.mu.Unlock()
	jb := j.jobs[p.Job]
	if jb == nil {
		jb = &Job{ID: p.Job}
		j.jobs[p.Job] = jb
		j.order = append(j.order, p.Job)
		if len(j.order) > keepJobs {
			delete(j.jobs, j.order[0])
			j.order = j.order[1:]
		}
	}
	jb.Done, jb.Total = p.Done, p.Total
	jb.maxTotal = max(jb.maxTotal, p.Total)
	// The manager's last report has Done == Total; a job starts with a
	// report of 0/N with N > 0, so Done == Total before the end only for a
	// job of no steps, which is ended too.
	jb.Ended = p.Done >= p.Total
	jb.Complete = jb.Ended && p.Total >= jb.maxTotal
	for ch, id := range j.subs {
		if id != "" && id != p.Job {
			continue
		}
		select {
		case ch <- *jb:
		default:
		}
	}
}

// Get returns a job's last state.
func (j *Jobs) Get(id string) (Job, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	jb, ok := j.jobs[id]
	if !ok {
		return Job{}, false
	}
	return *jb, true
}

// Subscribe returns a channel of the reports for job id (every job when
// ""), starting with its last state when known; cancel ends it.
func (j *Jobs) Subscribe(id string) (ch <-chan Job, last *Job, cancel func()) {
	c := make(chan Job, 64)
	j.mu.Lock()
	j.subs[c] = id
	if jb, ok := j.jobs[id]; ok && id != "" {
		cp := *jb
		last = &cp
	}
	j.mu.Unlock()
	return c, last, func() {
		j.mu.Lock()
		delete(j.subs, c)
		j.mu.Unlock()
	}
}
