package bgp

import (
	"context"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Mutations is the number of GoBGP configuration or RIB changes made.
func (s *Speaker) Mutations() int64 { return s.mutations.Load() }

// stale returns the learned prefixes whose best path is stale (kept for a
// restarting peer).
func (s *Speaker) stale() []netip.Prefix {
	s.lock(context.Background())
	srv := s.srv
	s.unlock()
	var out []netip.Prefix
	if srv == nil {
		return nil
	}
	_ = srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyIPv4}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if p.Best && p.Stale {
				out = append(out, netip.MustParsePrefix(d.Prefix))
			}
		}
	})
	return out
}

// sessionStarts returns when each established session came up, by
// neighbor address: unchanged if no session was reset.
func (s *Speaker) sessionStarts() map[string]time.Time {
	s.lock(context.Background())
	srv := s.srv
	s.unlock()
	out := map[string]time.Time{}
	_ = srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
			out[p.GetConf().GetNeighborAddress()] = p.GetTimers().GetState().GetUptime().AsTime()
		}
	})
	return out
}

// reasserted reports whether the restart bit was re-asserted at least once.
func (s *Speaker) reasserted() bool {
	return testutil.ToFloat64(s.metrics.restartReasserted) > 0
}

// localRestarting reports whether GoBGP marks peer a as locally restarting.
func (s *Speaker) localRestarting(ctx context.Context, a netip.Addr) bool {
	if !s.lock(ctx) {
		return false
	}
	srv := s.srv
	s.unlock()
	found := false
	_ = srv.ListPeer(ctx, &api.ListPeerRequest{Address: a.String()}, func(p *api.Peer) {
		found = p.GetGracefulRestart().GetLocalRestarting()
	})
	return found
}
