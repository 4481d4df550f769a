package slo

import "testing"

// TestGroupStatusAction: `proxypoolctl status` shows what the instance step
// waits for ahead of the last action, and a kind alone when it has no detail.
func TestGroupStatusAction(t *testing.T) {
	for _, tc := range []struct {
		s    GroupStatus
		want string
	}{
		{GroupStatus{}, ""},
		{GroupStatus{LastAction: "recheck"}, "recheck"},
		{GroupStatus{LastAction: "recheck", LastActionDetail: "re-checking 7 upstreams now"}, "recheck: re-checking 7 upstreams now"},
		{GroupStatus{LastAction: "newnym", LastActionDetail: "2 instances", Waiting: "tor@9062 started 20s ago"}, "waiting: tor@9062 started 20s ago"},
	} {
		if got := tc.s.Action(); got != tc.want {
			t.Errorf("%+v.Action() = %q, want %q", tc.s, got, tc.want)
		}
	}
}
