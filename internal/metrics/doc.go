// Package metrics is proxypool's Prometheus side: one registry (with the Go
// runtime and process collectors), typed recorders with plain-Go methods,
// and the HTTP server for /metrics and /healthz (default 127.0.0.1:9464).
//
// It does not decide anything and reads nothing: gateway, probe, source,
// torgen and the SLO loop report to it through interfaces they declare
// themselves (their packages never import Prometheus), and cmd hands it
// pool snapshots taken from the store. Wiring in cmd/proxypoold:
//
//	m := metrics.NewWith(metrics.Options{Version: version, Sources: names, Groups: groups})
//	go m.Serve(ctx, cfg.Metrics.Listen, healthFunc)
//	go m.PollPool(ctx, 15*time.Second, func(ctx context.Context) (metrics.PoolSnapshot, error) {
//		c, err := st.Counts(ctx)   // + st.Sources(ctx) for refresh freshness
//		return metrics.PoolSnapshot{Healthy: c.Healthy, ByState: c.ByState, …}, err
//	})
//	gateway.Options{…, Metrics: m.Gateway()}   // whatever the gateway's observer field is
//
// Every recorder method is safe on a nil receiver, so an unwired observer
// costs nothing.
//
// # Pool series come from snapshots
//
// The pool series are not kept up to date by the packages: SetPool (or
// PollPool, which calls it every interval) replaces them with one counted
// snapshot, and a collector emits that snapshot at scrape time, so one
// scrape never mixes two snapshots. Refresh freshness and group health
// each have two feeds (PoolSnapshot.Sources from the store, which survives
// the one-shot refresh process, and SourceMetrics.Refreshed in process;
// PoolSnapshot.Groups and SLOMetrics.Floor): both go into one merged state
// and the newer observation wins, so no series is emitted twice.
//
// # Bounded labels
//
// No label ever carries an upstream id, an address or a user name. Source
// and group labels are limited to Options.Sources/Options.Groups when
// given (other names count as "other"), else to the first
// Options.MaxLabelValues names seen; countries to the Options.MaxCountries
// (50) largest plus "other"; listener, proto, outcome, cause, kind and type
// to a fixed number of distinct values each, the rest "other". Values are
// cut to 64 bytes of valid UTF-8.
//
// # Outcome vocabulary
//
// proxypool_gateway_connections_total{outcome} counts "ok" for a client
// that got its tunnel or response. Failures the operator should see are
// named after their cause (no_upstream, upstream_failed, timeout, …);
// failures that are the client's are prefixed client_ (client_error,
// client_closed) or are auth_rejected. The error-rate alert and the
// dashboard's success rate count every outcome except ok, client_* and
// auth_rejected as an error.
//
// # Metrics
//
// Histograms also expose _bucket, _sum and _count series.
//
//	name                                              type       labels                     feed
//	proxypool_build_info                              gauge      version                    New
//	proxypool_pool_upstreams                          gauge      state                      SetPool ByState
//	proxypool_pool_healthy_upstreams                  gauge      -                          SetPool Healthy
//	proxypool_pool_upstreams_by_source                gauge      source                     SetPool BySource
//	proxypool_pool_upstreams_by_type                  gauge      type                       SetPool ByType
//	proxypool_pool_healthy_by_country                 gauge      country (top 50 + other)   SetPool ByCountry
//	proxypool_pool_healthy_by_anonymity               gauge      anonymity                  SetPool ByAnonymity
//	proxypool_pool_upstreams_by_group                 gauge      group                      SetPool ByGroup
//	proxypool_pool_healthy_by_class                   gauge      class (3 + unknown)        SetPool ByClass
//	proxypool_pool_exits                              gauge      -                          SetPool DistinctExits
//	proxypool_pool_healthy_exits                      gauge      -                          SetPool HealthyExits
//	proxypool_pool_snapshot_timestamp_seconds         gauge      -                          SetPool At
//	proxypool_pool_snapshot_errors_total              counter    -                          PollPool
//	proxypool_group_healthy_upstreams                 gauge      group                      SetPool Groups, SLO Floor
//	proxypool_group_healthy_exits                     gauge      group                      SetPool Groups, SLO Floor
//	proxypool_source_last_success_timestamp_seconds   gauge      source                     SetPool Sources, Source Refreshed
//	proxypool_source_last_attempt_timestamp_seconds   gauge      source                     SetPool Sources, Source Refreshed
//	proxypool_source_failing                          gauge      source                     SetPool Sources, Source Refreshed
//	proxypool_source_refreshes_total                  counter    source, result             Source Refreshed
//	proxypool_source_upstreams_total                  counter    source, change             Source Refreshed
//	proxypool_probe_checks_total                      counter    outcome                    Probe CheckDone
//	proxypool_probe_check_duration_seconds            histogram  result (ok, fail)          Probe CheckDone
//	proxypool_probe_backlog                           gauge      -                          Probe Backlog
//	proxypool_probe_pass_done                         gauge      -                          Probe Pass
//	proxypool_probe_pass_size                         gauge      -                          Probe Pass
//	proxypool_probe_pass_healthy                      gauge      -                          Probe Pass
//	proxypool_checks_target_upstreams                 gauge      target                     Checks TargetPass
//	proxypool_checks_target_passing                   gauge      target                     Checks TargetPass
//	proxypool_checks_target_outages_total             counter    target                     Checks TargetPass
//	proxypool_checks_speed_measured                   gauge      -                          Checks SpeedPass
//	proxypool_checks_speed_bytes_total                counter    -                          Checks SpeedPass
//	proxypool_gateway_connections_opened_total        counter    listener, proto            Gateway ConnOpened
//	proxypool_gateway_connections_active              gauge      listener                   Gateway ConnOpened/ConnDone
//	proxypool_gateway_connections_total               counter    listener, proto, outcome   Gateway ConnDone
//	proxypool_gateway_connection_duration_seconds     histogram  proto                      Gateway ConnDone
//	proxypool_gateway_tunnels_active                  gauge      -                          Gateway ActiveTunnels
//	proxypool_gateway_dial_duration_seconds           histogram  cause (ok or failure)      Gateway DialLatency
//	proxypool_gateway_retries_total                   counter    -                          Gateway Retry
//	proxypool_gateway_bytes_total                     counter    direction (up, down)       Gateway Bytes
//	proxypool_gateway_auth_rejected_total             counter    listener                   Gateway AuthRejected
//	proxypool_gateway_auth_delayed_total              counter    listener                   Gateway AuthDelayed
//	proxypool_gateway_client_limited_total            counter    listener                   Gateway ClientLimited
//	proxypool_gateway_snapshot_version                gauge      -                          Gateway SnapshotLoaded
//	proxypool_gateway_snapshot_upstreams              gauge      -                          Gateway SnapshotLoaded
//	proxypool_gateway_snapshot_load_seconds           gauge      -                          Gateway SnapshotLoaded
//	proxypool_gateway_snapshot_loaded_timestamp_seconds gauge    -                          Gateway SnapshotLoaded
//	proxypool_gateway_snapshot_loads_total            counter    -                          Gateway SnapshotLoaded
//	proxypool_tor_instances_active                    gauge      group                      Tor Instances
//	proxypool_tor_instances_bootstrapped              gauge      group                      Tor Instances
//	proxypool_tor_exits                               gauge      group                      Tor Exits
//	proxypool_tor_exits_usable                        gauge      group                      Tor Plan
//	proxypool_tor_instances_short                     gauge      group                      Tor Plan
//	proxypool_tor_discovery_timestamp_seconds         gauge      -                          Tor Discovered
//	proxypool_tor_instance_cpu_seconds_total          counter    group, port                Tor Resources, Retain
//	proxypool_tor_instance_memory_bytes               gauge      group, port                Tor Resources, Retain
//	proxypool_tor_traffic_bytes_total                 counter    group, direction           Tor Traffic
//	proxypool_slo_min_healthy                         gauge      group (_pool: whole pool)  SLO Floor
//	proxypool_slo_min_exits                           gauge      group                      SLO Floor
//	proxypool_slo_below_floor                         gauge      group                      SLO Floor
//	proxypool_slo_actions_total                       counter    group, kind                SLO Action
//
// Plus the standard go_* and process_* collectors and
// promhttp_metric_handler_*.
//
// The dashboard (packaging/grafana/proxypool.json) and the alert rules
// (packaging/prometheus/proxypool.rules.yml) use only these names; a test
// checks it, and that this table matches the registry.
package metrics
