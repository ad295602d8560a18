//go:build !unix

package main

// privateUmask is a no-op where there is no umask; the worker store still
// sets its own files' modes.
func privateUmask() {}
