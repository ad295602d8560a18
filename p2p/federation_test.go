package p2p

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadFederationValidation(t *testing.T) {
	w1, w2, c1 := testID(t, 11).String(), testID(t, 12).String(), testID(t, 13).String()
	coord := fmt.Sprintf(`
[[member]]
name = "coord-a"
peer_id = %q
role = "coordinator"
addrs = ["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"]
`, c1)
	worker := func(name, id string) string {
		return fmt.Sprintf("\n[[member]]\nname = %q\npeer_id = %q\nrole = \"worker\"\n", name, id)
	}
	cases := []struct {
		name    string
		content string
		wantErr []string // substrings; empty means valid
	}{
		{"valid", "name = \"fed\"\n" + coord + worker("st-marys", w1) + worker("lab-b", w2), nil},
		{"bad peer id", coord + worker("lab-a", w1) + worker("st-marys", "12D3KooWnotanid"),
			[]string{`federation.toml: member[2] "st-marys": peer_id: invalid`}},
		{"missing peer id", coord + "\n[[member]]\nname = \"x\"\nrole = \"worker\"\n",
			[]string{`member[1] "x": peer_id: missing`}},
		{"bad role", coord + "\n[[member]]\nname = \"x\"\npeer_id = \"" + w1 + "\"\nrole = \"boss\"\n",
			[]string{`member[1] "x": role:`, "boss"}},
		{"duplicate name", coord + worker("lab", w1) + worker("lab", w2),
			[]string{`member[2] "lab": name: duplicate of member[1]`}},
		{"duplicate id", coord + worker("lab-a", w1) + worker("lab-b", w1),
			[]string{`member[2] "lab-b": peer_id:`, "duplicate of member[1]"}},
		{"coordinator without addrs", fmt.Sprintf("[[member]]\nname = \"c\"\npeer_id = %q\nrole = \"coordinator\"\n", c1),
			[]string{`member[0] "c": addrs: a coordinator needs at least one address`}},
		{"bad multiaddr", fmt.Sprintf("[[member]]\nname = \"c\"\npeer_id = %q\nrole = \"coordinator\"\naddrs = [\"/ip4/999.1.1.1/tcp/1\"]\n", c1),
			[]string{`member[0] "c": addrs[0]: invalid multiaddr`}},
		{"addr of other peer", fmt.Sprintf("[[member]]\nname = \"c\"\npeer_id = %q\nrole = \"coordinator\"\naddrs = [\"/ip4/127.0.0.1/tcp/1/p2p/%s\"]\n", c1, w1),
			[]string{`member[0] "c": addrs[0]:`, "not the member's peer_id"}},
		{"no coordinator", worker("lab-a", w1), []string{`no member has role "coordinator"`}},
		{"no members", "name = \"empty\"\n", []string{"no members enrolled"}},
		{"bad name", coord + worker("has space", w1), []string{`member[1] "has space": name:`}},
		{"unknown field", coord + "\n[[member]]\nname = \"x\"\npeer_id = \"" + w1 + "\"\nrole = \"worker\"\ncolour = \"red\"\n",
			[]string{"unknown key", "member.colour", "[[member]]"}},
		{"not toml", "[[member\nname=", []string{"federation.toml"}},
		{"missing psk file", "psk_file = \"nope.key\"\n" + coord, []string{"psk_file", "nope.key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "federation.toml")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := LoadFederation(path)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if f.Len() != 3 || len(f.Coordinators()) != 1 {
					t.Fatalf("got %d members, %d coordinators", f.Len(), len(f.Coordinators()))
				}
				m, ok := f.LookupName("st-marys")
				if !ok || m.ID.String() != w1 || m.Role != RoleWorker {
					t.Fatalf("st-marys = %+v, %v", m, ok)
				}
				c, ok := f.Lookup(f.Coordinators()[0].ID)
				if !ok || len(c.Addrs) != 2 || c.Name != "coord-a" {
					t.Fatalf("coordinator = %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("loaded, want error containing %q", tc.wantErr)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

const testPSK = "/key/swarm/psk/1.0.0/\n/base16/\n" +
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"

func TestFederationPSKFile(t *testing.T) {
	dir := t.TempDir()
	c1 := testID(t, 13).String()
	content := fmt.Sprintf("psk_file = \"swarm.key\"\n[[member]]\nname = \"c\"\npeer_id = %q\nrole = \"coordinator\"\naddrs = [\"/ip4/127.0.0.1/tcp/1\"]\n", c1)
	path := filepath.Join(dir, "federation.toml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "swarm.key")
	if err := os.WriteFile(keyPath, []byte(testPSK), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFederation(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.PSK) != 32 || f.PSK[0] != 0x01 || f.PSK[31] != 0xef {
		t.Fatalf("PSK = %x", f.PSK)
	}
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFederation(path); err == nil || !strings.Contains(err.Error(), "0644") || !strings.Contains(err.Error(), keyPath) {
		t.Fatalf("world-readable PSK: err = %v", err)
	}
	// QUIC cannot run on a private network: NewHost says so.
	if err := os.Chmod(keyPath, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err = LoadFederation(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewHost(t.Context(), HostConfig{Identity: testKey(t, 13), Federation: f, ListenAddrs: listenAddrs("quic")})
	if err == nil || !strings.Contains(err.Error(), "ListenAddrs[0]") || !strings.Contains(err.Error(), "private network") {
		t.Fatalf("QUIC with PSK: err = %v", err)
	}
}
