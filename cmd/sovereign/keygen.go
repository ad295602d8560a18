package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/p2p"
)

func init() { rootCmd.AddCommand(newKeygenCmd()) }

// newKeygenCmd returns `sovereign keygen`, which creates an institution's
// Ed25519 identity key file and prints its peer ID for the federation file.
func newKeygenCmd() *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Create an Ed25519 identity key file (mode 0600) and print its peer ID",
		Long: "keygen writes a new libp2p Ed25519 private key to FILE with mode 0600 and prints\n" +
			"the peer ID to enter as peer_id in the federation file. It refuses to overwrite an\n" +
			"existing file unless --force is given.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("keygen: --out is required")
			}
			sk, err := p2p.GenerateIdentity()
			if err != nil {
				return err
			}
			if force {
				if err := os.Remove(out); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("keygen: replace %s: %w", out, err)
				}
			}
			if err := p2p.WriteIdentity(out, sk); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("keygen: %s already exists; use --force to replace it (the old identity is lost)", out)
				}
				return fmt.Errorf("keygen: %w", err)
			}
			id, err := peer.IDFromPrivateKey(sk)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), id.String())
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "file to write the private key to (created with mode 0600)")
	cmd.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	return cmd
}
