package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/pelletier/go-toml/v2"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// describeTOMLError adds the line and column of a TOML decoding error and
// names unknown keys.
func describeTOMLError(err error) error {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Errorf("line %d, column %d: %s", row, col, de.String())
	}
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) {
		return fmt.Errorf("unknown key(s): %s", sm.String())
	}
	return err
}
