package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// children caches the children of a metric vector by a comparable key of
// their label values, so that an observation on every proxied request
// skips WithLabelValues' hashing and validation of the label strings. A
// child is still created (and its series exported) only when first used.
// The keys are bounded sets: route templates of the table, statuses,
// results, status classes.
type children[K comparable, M any] struct {
	m   sync.Map // K → M
	new func(K) M
}

func (c *children[K, M]) get(k K) M {
	if v, ok := c.m.Load(k); ok {
		return v.(M)
	}
	v, _ := c.m.LoadOrStore(k, c.new(k))
	return v.(M)
}

type routeStatus struct {
	route  string
	status int
}

// proxyChildren are the per-request metrics' children.
type proxyChildren struct {
	decisions children[routeStatus, prometheus.Counter]
	duration  children[bool, prometheus.Observer] // by allowed
	upstream  children[int, prometheus.Observer]  // by status class (status/100; 0: error)
}

func (m *Metrics) initProxyChildren() {
	m.proxyKids.decisions.new = func(k routeStatus) prometheus.Counter {
		return m.proxyDecisions.WithLabelValues(k.route, statusLabel(k.status))
	}
	m.proxyKids.duration.new = func(allowed bool) prometheus.Observer {
		if allowed {
			return m.proxyDuration.WithLabelValues("allowed")
		}
		return m.proxyDuration.WithLabelValues("denied")
	}
	m.proxyKids.upstream.new = func(class int) prometheus.Observer {
		if class == 0 {
			return m.upstreamDuration.WithLabelValues("error")
		}
		return m.upstreamDuration.WithLabelValues(string(rune('0'+class)) + "xx")
	}
}
