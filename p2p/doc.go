// Package p2p is the networking foundation of the Sovereign federation.
//
// It provides:
//
//   - a libp2p host (TCP and QUIC transports, Noise security on TCP, yamux
//     multiplexing) built by [NewHost] from a [HostConfig] and functional options;
//   - persistent Ed25519 identities in key files ([LoadOrCreateIdentity],
//     [WriteIdentity], [PeerIDFromFile]);
//   - enrollment: a federation file ([LoadFederation]) listing every institution,
//     enforced by a connection gater ([Gater]) that refuses any other peer;
//   - versioned protocol IDs (/sovereign/<name>/1.0.0), with one stream handler
//     per protocol registered through [Host.Handle], which sets a deadline on the
//     stream, bounds every frame, checks the remote peer's enrollment and role,
//     and resets the stream on error;
//   - length-prefixed protobuf framing ([WriteMsg], [ReadMsg]);
//   - chunked, SHA-256-verified blob streams for models and masked vectors
//     ([SendBlob], [ReceiveBlob], [Host.HandleBlobs], [FetchBlob], [Host.ServeBlobs]);
//   - a [Client] that sends a request and reads a response with a deadline.
//
// Package p2p knows nothing of coordinators or workers: they register their
// handlers with a [Host].
package p2p
