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
