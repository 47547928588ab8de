package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartCluster starts n (≥ 1) redis-servers in cluster mode, splits the
// 16,384 hash slots between them, joins them and waits until every node
// reports cluster_state:ok. Each node is a Server stopped at cleanup; their
// Addrs are the seeds for a cluster client.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	if n < 1 {
		t.Fatalf("redistest: StartCluster(%d): need at least one node", n)
	}
	nodes := make([]*Server, n)
	for i := range nodes {
		nodes[i] = Start(t, WithArgs("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const slots = 16384
	for i, s := range nodes {
		lo, hi := i*slots/n, (i+1)*slots/n-1
		if err := s.Client().ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER ADDSLOTSRANGE %d %d on %s: %v", lo, hi, s.Addr(), err)
		}
	}
	for _, s := range nodes[1:] {
		if err := nodes[0].Client().ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(s.port)).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER MEET %s: %v", s.Addr(), err)
		}
	}
	for _, s := range nodes {
		for {
			info, err := s.Client().ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("redistest: cluster node %s not ready within 30s: %v\n%s", s.Addr(), err, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}

// ClusterAddrs returns the nodes' addresses, the seeds for a cluster client.
func ClusterAddrs(nodes []*Server) []string {
	out := make([]string, len(nodes))
	for i, s := range nodes {
		out[i] = s.Addr()
	}
	return out
}

// StartSentinel starts a Redis Sentinel that monitors master under name
// (quorum 1) and waits until it reports the master. The Sentinel is a
// Server (its Addr is the sentinel address) stopped at cleanup.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	s := Start(t, withSentinel(master, name))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), DisableIdentity: true})
	defer sc.Close()
	for {
		addr, err := sc.GetMasterAddrByName(ctx, name).Result()
		if err == nil && len(addr) == 2 && addr[1] == strconv.Itoa(master.port) {
			return s
		}
		if ctx.Err() != nil {
			t.Fatalf("redistest: sentinel %s does not report master %q at %s within 30s: %v %v", s.Addr(), name, master.Addr(), addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// withSentinel makes Start run redis-server in sentinel mode: a sentinel
// needs a writable configuration file, written into the server's directory
// just before each start (the port is known only then).
func withSentinel(master *Server, name string) Option {
	return func(c *config) {
		c.sentinel = func(dir string, port int) ([]string, error) {
			path := filepath.Join(dir, "sentinel.conf")
			conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\n", port, dir, name, master.port)
			if master.cfg.password != "" {
				conf += fmt.Sprintf("sentinel auth-pass %s %s\n", name, master.cfg.password)
			}
			if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
				return nil, err
			}
			return []string{path, "--sentinel"}, nil
		}
	}
}

// Pid returns the process id of the running server (0 when stopped), so a
// fault test can name the process it kills.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Port returns the server's TCP port.
func (s *Server) Port() int { return s.port }

// fastSync makes a primary start a replica's full sync at once (the
// default diskless sync waits 5 s for more replicas to join it).
var fastSync = []string{"--repl-diskless-sync-delay", "0"}

// StartReplica starts a replica of primary and waits until it is in sync.
func StartReplica(t testing.TB, primary *Server) *Server {
	t.Helper()
	r := Start(t, WithArgs(append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.port)}, fastSync...)...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		ok, err := InSync(ctx, primary, []*Server{r})
		if err == nil && ok {
			return r
		}
		if ctx.Err() != nil {
			t.Fatalf("redistest: replica %s of %s not in sync within 30s: %v", r.Addr(), primary.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FastSyncArgs are redis-server arguments for a primary whose replicas
// should sync at once (WithArgs(FastSyncArgs()...)).
func FastSyncArgs() []string { return append([]string(nil), fastSync...) }

// ClusterOptions tune StartClusterWithReplicas.
type ClusterOptions struct {
	// Primaries (≥ 1) share the hash slots; each has ReplicasEach replicas.
	Primaries, ReplicasEach int
	// NodeTimeout is cluster-node-timeout: how long a primary must be
	// unreachable before it is marked failed and its replica takes over.
	// Default 1s.
	NodeTimeout time.Duration
}

// StartClusterWithReplicas starts a Redis Cluster of o.Primaries primaries,
// each with o.ReplicasEach replicas (CLUSTER REPLICATE), and waits until
// every node reports cluster_state:ok and every replica is in sync with
// its primary. The result lists the primaries first, then the replicas;
// which node is a primary changes after a failover, so ask
// ClusterPrimaryForKey.
func StartClusterWithReplicas(t testing.TB, o ClusterOptions) []*Server {
	t.Helper()
	if o.Primaries < 1 || o.ReplicasEach < 0 {
		t.Fatalf("redistest: StartClusterWithReplicas(%+v): need at least one primary", o)
	}
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = time.Second
	}
	n := o.Primaries * (1 + o.ReplicasEach)
	nodes := make([]*Server, n)
	for i := range nodes {
		nodes[i] = Start(t, WithArgs(append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(o.NodeTimeout.Milliseconds()))}, fastSync...)...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const slots = 16384
	for i, s := range nodes[:o.Primaries] {
		lo, hi := i*slots/o.Primaries, (i+1)*slots/o.Primaries-1
		if err := s.Client().ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER ADDSLOTSRANGE %d %d on %s: %v", lo, hi, s.Addr(), err)
		}
	}
	for _, s := range nodes[1:] {
		if err := nodes[0].Client().ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(s.port)).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER MEET %s: %v", s.Addr(), err)
		}
	}
	awaitCluster(t, ctx, nodes, func(s *Server) string {
		info, err := s.Client().ClusterInfo(ctx).Result()
		if err != nil {
			return err.Error()
		}
		if !strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)) {
			return info
		}
		return ""
	})
	// Replica j of primary i is nodes[o.Primaries + i*ReplicasEach + j].
	for i, p := range nodes[:o.Primaries] {
		id, err := p.Client().ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatalf("redistest: CLUSTER MYID on %s: %v", p.Addr(), err)
		}
		for j := range o.ReplicasEach {
			r := nodes[o.Primaries+i*o.ReplicasEach+j]
			for {
				// The replica must know the primary's id first (gossip).
				err := r.Client().Do(ctx, "CLUSTER", "REPLICATE", id).Err()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("redistest: CLUSTER REPLICATE %s on %s: %v", id, r.Addr(), err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	awaitCluster(t, ctx, nodes, func(s *Server) string {
		info, err := s.Client().ClusterInfo(ctx).Result()
		if err != nil {
			return err.Error()
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return info
		}
		repl, err := s.Client().Info(ctx, "replication").Result()
		if err != nil {
			return err.Error()
		}
		switch infoField(repl, "role") {
		case "master":
			if c := infoField(repl, "connected_slaves"); c != strconv.Itoa(o.ReplicasEach) && nodeIsPrimary(s, nodes[:o.Primaries]) {
				return "connected_slaves:" + c
			}
		case "slave":
			if infoField(repl, "master_link_status") != "up" {
				return repl
			}
		}
		return ""
	})
	return nodes
}

func nodeIsPrimary(s *Server, primaries []*Server) bool {
	for _, p := range primaries {
		if p == s {
			return true
		}
	}
	return false
}

// awaitCluster polls notReady on every node until it returns "".
func awaitCluster(t testing.TB, ctx context.Context, nodes []*Server, notReady func(*Server) string) {
	t.Helper()
	for _, s := range nodes {
		for {
			why := notReady(s)
			if why == "" {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("redistest: cluster node %s not ready in time: %s", s.Addr(), why)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// ClusterPrimaryForKey returns the node that is, according to the running
// nodes, the primary serving key's hash slot now (after a failover: the
// promoted replica).
func ClusterPrimaryForKey(t testing.TB, nodes []*Server, key string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var lastErr error
	for _, s := range nodes {
		if !s.Running() {
			continue
		}
		slot, err := s.Client().ClusterKeySlot(ctx, key).Result()
		if err != nil {
			lastErr = err
			continue
		}
		ranges, err := s.Client().ClusterSlots(ctx).Result()
		if err != nil {
			lastErr = err
			continue
		}
		for _, r := range ranges {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
				for _, n := range nodes {
					if n.Addr() == r.Nodes[0].Addr {
						return n
					}
				}
				t.Fatalf("redistest: slot %d of %q is served by %s, which is not one of our nodes", slot, key, r.Nodes[0].Addr)
			}
		}
		lastErr = fmt.Errorf("no node serves slot %d", slot)
	}
	t.Fatalf("redistest: no primary found for key %q: %v", key, lastErr)
	return nil
}

// SentinelOptions tune StartSentinelGroup.
type SentinelOptions struct {
	Name      string // the master name; default "mymaster"
	Replicas  int    // replicas of the primary (REPLICAOF); default 1
	Sentinels int    // default 3
	Quorum    int    // default a majority of Sentinels
	// DownAfter is down-after-milliseconds: how long the primary must be
	// unreachable before the sentinels start a failover. Default 1s.
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout; default 10s.
	FailoverTimeout time.Duration
	// StallableLinks connects each replica to the primary through a
	// LinkProxy (SentinelGroup.Links), so a test can stall replication.
	StallableLinks bool
}

// SentinelGroup is a primary, its replicas and the sentinels monitoring
// them, started by StartSentinelGroup. Every process is stopped at cleanup.
type SentinelGroup struct {
	Name      string
	Servers   []*Server // the data nodes; Servers[0] is the first primary
	Sentinels []*Server
	// Links[i] carries the replication stream to Servers[i+1] when
	// SentinelOptions.StallableLinks is set.
	Links []*LinkProxy
}

// SentinelAddrs returns the sentinels' addresses (redis.addrs in Sentinel mode).
func (g *SentinelGroup) SentinelAddrs() []string { return ClusterAddrs(g.Sentinels) }

// StartSentinelGroup starts a primary, o.Replicas replicas of it and
// o.Sentinels sentinels monitoring it, and waits until every replica is in
// sync and every sentinel knows every replica and every other sentinel (a
// sentinel that does not know its peers cannot reach a quorum).
func StartSentinelGroup(t testing.TB, o SentinelOptions) *SentinelGroup {
	t.Helper()
	if o.Name == "" {
		o.Name = "mymaster"
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Sentinels == 0 {
		o.Sentinels = 3
	}
	if o.Quorum == 0 {
		o.Quorum = o.Sentinels/2 + 1
	}
	if o.DownAfter <= 0 {
		o.DownAfter = time.Second
	}
	if o.FailoverTimeout <= 0 {
		o.FailoverTimeout = 10 * time.Second
	}
	g := &SentinelGroup{Name: o.Name}
	primary := Start(t, WithArgs(fastSync...))
	g.Servers = append(g.Servers, primary)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range o.Replicas {
		port := primary.port
		if o.StallableLinks {
			l := StartLinkProxy(t, primary.Addr())
			g.Links = append(g.Links, l)
			port = l.Port()
		}
		r := Start(t, WithArgs(append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(port)}, fastSync...)...))
		g.Servers = append(g.Servers, r)
	}
	for {
		ok, err := InSync(ctx, primary, g.Servers)
		if err == nil && ok {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("redistest: the replicas of %s are not in sync: %v", primary.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	extra := fmt.Sprintf("sentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s %d\nsentinel parallel-syncs %s 1\n",
		o.Name, o.DownAfter.Milliseconds(), o.Name, o.FailoverTimeout.Milliseconds(), o.Name)
	for range o.Sentinels {
		g.Sentinels = append(g.Sentinels, Start(t, withSentinelConf(primary, o.Name, o.Quorum, extra)))
	}
	for _, s := range g.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), DisableIdentity: true})
		for {
			reps, err1 := sc.Replicas(ctx, o.Name).Result()
			peers, err2 := sc.Sentinels(ctx, o.Name).Result()
			if err1 == nil && err2 == nil && len(reps) == o.Replicas && len(peers) == o.Sentinels-1 {
				break
			}
			if ctx.Err() != nil {
				sc.Close()
				t.Fatalf("redistest: sentinel %s knows %d replicas and %d peers (want %d and %d): %v %v",
					s.Addr(), len(reps), len(peers), o.Replicas, o.Sentinels-1, err1, err2)
			}
			time.Sleep(50 * time.Millisecond)
		}
		sc.Close()
	}
	return g
}

// Primary returns the data node the sentinels currently report as the
// primary (it changes after a failover).
func (g *SentinelGroup) Primary(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var lastErr error
	for _, s := range g.Sentinels {
		if !s.Running() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), DisableIdentity: true})
		addr, err := sc.GetMasterAddrByName(ctx, g.Name).Result()
		sc.Close()
		if err != nil || len(addr) != 2 {
			lastErr = fmt.Errorf("%v %v", addr, err)
			continue
		}
		for _, d := range g.Servers {
			if strconv.Itoa(d.port) == addr[1] {
				return d
			}
		}
		lastErr = fmt.Errorf("sentinel %s reports %v, not one of our servers", s.Addr(), addr)
	}
	t.Fatalf("redistest: no sentinel reports the primary of %q: %v", g.Name, lastErr)
	return nil
}

// InSync reports whether every running replica of primary has received
// everything primary has written so far (its master_repl_offset), so a
// test can mark a point before which no acknowledged write can be lost by
// a failover. The replicas of primary are those it lists as online
// (whatever address they reach it by: directly or through a LinkProxy);
// false when there is none.
func InSync(ctx context.Context, primary *Server, replicas []*Server) (bool, error) {
	repl, err := primary.Client().Info(ctx, "replication").Result()
	if err != nil {
		return false, err
	}
	want, _ := strconv.ParseInt(infoField(repl, "master_repl_offset"), 10, 64)
	online := map[string]bool{}
	for _, line := range strings.Split(repl, "\n") {
		// slave0:ip=127.0.0.1,port=6380,state=online,offset=123,lag=0
		if !strings.HasPrefix(line, "slave") || !strings.Contains(line, ":ip=") {
			continue
		}
		f := map[string]string{}
		for _, kv := range strings.Split(strings.TrimSpace(line[strings.IndexByte(line, ':')+1:]), ",") {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["state"] == "online" {
			online[f["port"]] = true
		}
	}
	n := 0
	for _, r := range replicas {
		if r == primary || !r.Running() || !online[strconv.Itoa(r.port)] {
			continue
		}
		ri, err := r.Client().Info(ctx, "replication").Result()
		if err != nil {
			return false, err
		}
		if infoField(ri, "role") != "slave" || infoField(ri, "master_link_status") != "up" {
			return false, nil // still in its first sync (or reconnecting)
		}
		n++
		got, _ := strconv.ParseInt(infoField(ri, "slave_repl_offset"), 10, 64)
		if got < want {
			return false, nil
		}
	}
	return n > 0, nil
}

// withSentinelConf is withSentinel with a quorum and extra sentinel.conf lines.
func withSentinelConf(master *Server, name string, quorum int, extra string) Option {
	return func(c *config) {
		c.sentinel = func(dir string, port int) ([]string, error) {
			path := filepath.Join(dir, "sentinel.conf")
			conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d %d\n%s", port, dir, name, master.port, quorum, extra)
			if master.cfg.password != "" {
				conf += fmt.Sprintf("sentinel auth-pass %s %s\n", name, master.cfg.password)
			}
			if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
				return nil, err
			}
			return []string{path, "--sentinel"}, nil
		}
	}
}

// FailoverDone reports whether every running sentinel has finished a
// failover away from old: each reports another primary, has no failover in
// progress, and lists old among the replicas (so it will make old a replica
// when it returns, instead of taking it back as the primary).
func (g *SentinelGroup) FailoverDone(t testing.TB, old *Server) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range g.Sentinels {
		if !s.Running() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), DisableIdentity: true})
		m, err1 := sc.Master(ctx, g.Name).Result()
		reps, err2 := sc.Replicas(ctx, g.Name).Result()
		sc.Close()
		if err1 != nil || err2 != nil || m["port"] == strconv.Itoa(old.port) || strings.Contains(m["flags"], "failover") {
			return false
		}
		listed := false
		for _, r := range reps {
			if r["port"] == strconv.Itoa(old.port) {
				listed = true
			}
		}
		if !listed {
			return false
		}
	}
	return true
}
