package secagg

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// A client that advertises a point of small order as one of its keys
// (signed with its own enrolled key, as an insider would) makes every key
// agreement with it the all-zero secret: its pairwise masks would be known
// to anyone, and its honest neighbours' key agreement would fail in the
// next stage, costing them the round. The server refuses the advertisement
// naming the client and the key; the round goes on without it and yields
// the exact sum of every other client. An honest client handed such a key
// (by a server that lies) refuses it, naming the neighbour, before it
// shares anything.
func TestAttackSmallOrderKeyRefused(t *testing.T) {
	points := smallOrderEncodings()
	for _, field := range []string{"EncKey", "MaskKey"} {
		for _, pi := range []int{0, 3, len(points) - 1} {
			u := points[pi]
			t.Run(fmt.Sprintf("%s=%x", field, u[:4]), func(t *testing.T) {
				cfg := testConfig(8, 16)
				cfg.ConsistencyCheck = true
				keys := testPKI(cfg.Clients, 3)
				q := captureQuantized(t)
				up, w := testInputs(cfg, 4)
				evil := cfg.Clients[2]
				bad := func(a AdvertiseKeys) AdvertiseKeys {
					if field == "EncKey" {
						a.EncKey = slices.Clone(u[:])
					} else {
						a.MaskKey = slices.Clone(u[:])
					}
					sig, err := edAuth{evil, keys}.Sign(AdvertiseMessage(a))
					if err != nil {
						t.Fatal(err)
					}
					a.Signature = sig
					return a
				}
				refused := false
				hook := func(to uint32, reply any) any {
					a, ok := reply.(AdvertiseKeys)
					if !ok || to != evil {
						return reply
					}
					return mustRefuse{bad(a), func(err error) {
						want := fmt.Sprintf("%s of client %d", field, evil)
						if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) {
							t.Fatalf("server refused with %v, want ErrMalformed naming %q", err, want)
						}
						refused = true
						t.Logf("server: %v", err)
					}}
				}
				srv, err := runRound(t, cfg, keys, up, w, hook)
				if err != nil {
					t.Fatalf("round failed: %v", err)
				}
				if !refused {
					t.Fatal("the attacker's advertisement never reached the server")
				}
				out := outcomeOf(t, srv)
				if slices.Contains(out.Survivors, evil) || len(out.Survivors) != len(cfg.Clients)-1 {
					t.Fatalf("survivors %v: want every client but %d", out.Survivors, evil)
				}
				checkExact(t, cfg, out, q, up, w)

				// The same key relayed by a lying server to an honest neighbour.
				probe, err := NewClient(cfg, evil, seeded(2))
				if err != nil {
					t.Fatal(err)
				}
				victimID := probe.graph.Neighbours(evil)[0]
				victim, _ := NewClient(cfg, victimID, seeded(1))
				victim.SetAuthenticator(edAuth{victimID, keys})
				victim.Advertise()
				var ads []AdvertiseKeys
				for _, id := range victim.graph.Neighbours(victimID) {
					c, err := NewClient(cfg, id, seeded(uint64(900+id)))
					if err != nil {
						t.Fatal(err)
					}
					c.SetAuthenticator(edAuth{id, keys})
					a, _ := c.Advertise()
					if id == evil {
						a = bad(a)
					}
					ads = append(ads, a)
				}
				_, err = victim.ShareKeys(ads)
				if want := fmt.Sprintf("client %d", evil); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) {
					t.Fatalf("honest client given the key: err = %v, want ErrMalformed naming %s", err, want)
				}
			})
		}
	}
}
