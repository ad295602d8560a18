package p2p

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"
)

// Role is what an enrolled institution does in the federation. Its string
// form is what federation files use.
type Role string

// The roles an institution may hold.
const (
	RoleWorker      Role = "worker"
	RoleCoordinator Role = "coordinator"
	// RoleObserver may only ask for status (e.g. the identity an operator
	// runs `sovereign status` with): it takes no part in rounds.
	RoleObserver Role = "observer"
	// RoleOperator may ask for status and send study requests (`sovereign
	// study start|pause|resume|stop`); it takes no part in rounds or Raft.
	RoleOperator Role = "operator"
)

// Valid reports whether r is one of the known roles.
// AllRoles returns every role, for protocols any enrolled member may open
// (status). A protocol's roles are always spelled out.
func AllRoles() []Role { return []Role{RoleCoordinator, RoleWorker, RoleObserver, RoleOperator} }

func (r Role) Valid() bool {
	return r == RoleWorker || r == RoleCoordinator || r == RoleObserver || r == RoleOperator
}

// Member is one enrolled institution.
type Member struct {
	// Name is the institution's short name, unique in the federation.
	Name string
	// ID is the peer ID of the institution's identity key.
	ID peer.ID
	// Role is worker or coordinator.
	Role Role
	// Addrs are the addresses the member listens on; required for
	// coordinators (workers dial them), optional for workers.
	Addrs []ma.Multiaddr
}

// AddrInfo returns the member's peer ID and addresses, ready for dialling.
func (m Member) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: m.ID, Addrs: append([]ma.Multiaddr(nil), m.Addrs...)}
}

// Federation is the enrolled set of institutions, as loaded from a
// federation file. A Federation is immutable once built; use
// [NewFederation] to build a changed one and [Gater.SetFederation] or
// [Host.SetFederation] to apply it at run time.
type Federation struct {
	// Name is the federation's name (informational).
	Name string
	// PSK is the libp2p private-network key, nil when the federation does not
	// use one. With a PSK only TCP can be used: libp2p's QUIC transport does
	// not support private networks.
	PSK pnet.PSK

	members []Member
	byID    map[peer.ID]int
	byName  map[string]int
}

// Members returns a copy of the members, in file order.
func (f *Federation) Members() []Member {
	out := make([]Member, len(f.members))
	copy(out, f.members)
	return out
}

// Lookup returns the member with peer ID id.
func (f *Federation) Lookup(id peer.ID) (Member, bool) {
	i, ok := f.byID[id]
	if !ok {
		return Member{}, false
	}
	return f.members[i], true
}

// LookupName returns the member called name.
func (f *Federation) LookupName(name string) (Member, bool) {
	i, ok := f.byName[name]
	if !ok {
		return Member{}, false
	}
	return f.members[i], true
}

// Coordinators returns the members whose role is coordinator, in file order.
func (f *Federation) Coordinators() []Member {
	var out []Member
	for _, m := range f.members {
		if m.Role == RoleCoordinator {
			out = append(out, m)
		}
	}
	return out
}

// Len returns the number of members.
func (f *Federation) Len() int { return len(f.members) }

// memberNameRE is what an institution name may look like: it appears in
// logs, file names and error messages.
var memberNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// NewFederation validates members and builds a Federation. Errors name the
// entry by index and name, and the field at fault. Names and peer IDs must be
// unique, and there must be at least one coordinator.
func NewFederation(name string, members []Member, psk pnet.PSK) (*Federation, error) {
	return newFederation("federation", name, members, psk)
}

func newFederation(src, name string, members []Member, psk pnet.PSK) (*Federation, error) {
	f := &Federation{
		Name:   name,
		PSK:    psk,
		byID:   make(map[peer.ID]int, len(members)),
		byName: make(map[string]int, len(members)),
	}
	if len(members) == 0 {
		return nil, fmt.Errorf("%s: member: no members enrolled", src)
	}
	if psk != nil && len(psk) != 32 {
		return nil, fmt.Errorf("%s: psk: %d bytes, want 32", src, len(psk))
	}
	coordinators := 0
	for i, m := range members {
		where := fmt.Sprintf("%s: member[%d] %q", src, i, m.Name)
		if !memberNameRE.MatchString(m.Name) {
			return nil, fmt.Errorf("%s: name: must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", where)
		}
		if err := m.ID.Validate(); err != nil {
			return nil, fmt.Errorf("%s: peer_id: invalid: %w", where, err)
		}
		if _, err := m.ID.ExtractPublicKey(); err != nil {
			return nil, fmt.Errorf("%s: peer_id: %s does not embed a public key (want an Ed25519 identity): %v", where, m.ID, err)
		}
		if !m.Role.Valid() {
			return nil, fmt.Errorf("%s: role: %q is not %q, %q, %q or %q", where, m.Role, RoleWorker, RoleCoordinator, RoleObserver, RoleOperator)
		}
		if m.Role == RoleCoordinator {
			coordinators++
			if len(m.Addrs) == 0 {
				return nil, fmt.Errorf("%s: addrs: a coordinator needs at least one address", where)
			}
		}
		addrs := make([]ma.Multiaddr, 0, len(m.Addrs))
		for j, a := range m.Addrs {
			if a == nil {
				return nil, fmt.Errorf("%s: addrs[%d]: empty address", where, j)
			}
			transport, id := peer.SplitAddr(a)
			if transport == nil {
				return nil, fmt.Errorf("%s: addrs[%d]: %q has no transport part", where, j, a)
			}
			if id != "" && id != m.ID {
				return nil, fmt.Errorf("%s: addrs[%d]: %q names peer %s, not the member's peer_id %s", where, j, a, id, m.ID)
			}
			addrs = append(addrs, transport)
		}
		if j, dup := f.byName[m.Name]; dup {
			return nil, fmt.Errorf("%s: name: duplicate of member[%d]", where, j)
		}
		if j, dup := f.byID[m.ID]; dup {
			return nil, fmt.Errorf("%s: peer_id: %s duplicate of member[%d] %q", where, m.ID, j, members[j].Name)
		}
		m.Addrs = addrs
		f.byName[m.Name] = i
		f.byID[m.ID] = i
		f.members = append(f.members, m)
	}
	if coordinators == 0 {
		return nil, fmt.Errorf("%s: member: no member has role %q", src, RoleCoordinator)
	}
	return f, nil
}

// federationFile is the TOML layout of a federation file:
//
//	name = "oncology-2026"
//	psk_file = "swarm.key"        # optional, relative to this file
//
//	[[member]]
//	name = "st-marys"
//	peer_id = "12D3KooW..."
//	role = "worker"
//
//	[[member]]
//	name = "coord-a"
//	peer_id = "12D3KooW..."
//	role = "coordinator"
//	addrs = ["/ip4/10.0.0.1/tcp/4001", "/ip4/10.0.0.1/udp/4001/quic-v1"]
type federationFile struct {
	Name    string         `toml:"name"`
	PSKFile string         `toml:"psk_file"`
	Member  []memberRecord `toml:"member"`
}

type memberRecord struct {
	Name   string   `toml:"name"`
	PeerID string   `toml:"peer_id"`
	Role   string   `toml:"role"`
	Addrs  []string `toml:"addrs"`
}

// LoadFederation reads and validates a federation file (TOML, layout in the
// package's federation.go). A psk_file, if named, is read relative to the
// federation file's folder, must have mode 0600 and hold a libp2p v1 PSK
// ("/key/swarm/psk/1.0.0/"). Errors name the file, the entry and the field,
// e.g. `federation.toml: member[2] "st-marys": peer_id: invalid ...`.
func LoadFederation(path string) (*Federation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load federation: %w", err)
	}
	return ParseFederation(filepath.Base(path), data, filepath.Dir(path))
}

// ParseFederation validates the federation file content data. src names the
// file in errors; dir is where a relative psk_file is looked up.
func ParseFederation(src string, data []byte, dir string) (*Federation, error) {
	var ff federationFile
	if err := FederationDoc.Decode(src, data, &ff); err != nil {
		return nil, err
	}
	members := make([]Member, len(ff.Member))
	for i, r := range ff.Member {
		where := fmt.Sprintf("%s: member[%d] %q", src, i, r.Name)
		if r.PeerID == "" {
			return nil, fmt.Errorf("%s: peer_id: missing", where)
		}
		id, err := peer.Decode(r.PeerID)
		if err != nil {
			return nil, fmt.Errorf("%s: peer_id: invalid %q: %v", where, r.PeerID, err)
		}
		m := Member{Name: r.Name, ID: id, Role: Role(r.Role)}
		for j, s := range r.Addrs {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				return nil, fmt.Errorf("%s: addrs[%d]: invalid multiaddr %q: %v", where, j, s, err)
			}
			m.Addrs = append(m.Addrs, a)
		}
		members[i] = m
	}
	var psk pnet.PSK
	if ff.PSKFile != "" {
		p := ff.PSKFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		loaded, err := LoadPSK(p)
		if err != nil {
			return nil, fmt.Errorf("%s: psk_file: %w", src, err)
		}
		psk = loaded
	}
	return newFederation(src, ff.Name, members, psk)
}

// LoadPSK reads a libp2p private-network key file (v1 format), refusing a
// file that group or other users may access.
func LoadPSK(path string) (pnet.PSK, error) {
	data, err := readPrivateFile(path, maxKeyFileSize)
	if err != nil {
		return nil, err
	}
	psk, err := pnet.DecodeV1PSK(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: not a libp2p v1 PSK: %w", path, err)
	}
	if len(psk) != 32 {
		return nil, fmt.Errorf("%s: key of %d bytes, want 32", path, len(psk))
	}
	return psk, nil
}
