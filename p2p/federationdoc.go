package p2p

import (
	"reflect"

	"github.com/sovereign-fl/sovereign/internal/confdoc"
)

// FederationDoc documents every key of the federation file; the reference
// test (cmd/sovereign) fails on a key without an entry and renders
// docs/config.md from it. ParseFederation decodes with it.
var FederationDoc = confdoc.File{
	Name:  "federation",
	Title: "Federation file (`federation = \"…\"` in every other file)",
	Intro: "The same file at every member: the federation's name and every enrolled peer. Every process refuses " +
		"connections from peers it does not list (after the Noise handshake has proven their identity). " +
		"Restart members to apply a changed file.",
	Schema: reflect.TypeOf(federationFile{}),
	Docs: confdoc.Docs{
		"name":        {Text: "The federation's name; SecAgg+ key signatures and model files are bound to it.", Note: "required", Example: `"cardiology-2025"`},
		"psk_file":    {Text: "A libp2p private-network key (v1 PSK, mode 0600), relative to this file; with it only TCP is used.", Note: "none", Example: `"swarm.key"`},
		"member":      {Text: "One entry per enrolled peer; at least one coordinator."},
		"member.name": {Text: "The member's name, unique; logs and `status` use it.", Note: "required", Example: `"st-marys"`},
		"member.peer_id": {Text: "The peer ID `sovereign keygen` printed for the member's key.", Note: "required",
			Type: "peer ID string", Example: `"12D3KooW…"`},
		"member.role":  {Text: "What the member may do: drive rounds, train, or only ask for status.", Note: "required", Range: "`coordinator`, `worker`, `observer`", Example: `"worker"`},
		"member.addrs": {Text: "Multiaddrs where the member listens; required for coordinators (workers and observers dial them).", Note: "none", Type: "array of multiaddr strings", Example: `["/ip4/203.0.113.10/tcp/4001"]`},
	},
}
