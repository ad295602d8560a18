package coordinator

import "github.com/sovereign-fl/sovereign/model"

// This file opens a few unexported helpers to the package's external tests
// (package coordinator_test), which share the in-memory cohort of
// coordinator/coordtest.

// CloneAnnounce is cloneAnnounce.
var CloneAnnounce = cloneAnnounce

// ConfigSpec is c.spec().
func ConfigSpec(c Config) (model.Spec, error) { return c.spec() }

// RegistryPutRaw is r.putRaw: it stores b under h without checking the hash.
func RegistryPutRaw(r *Registry, h Hash, b []byte) error { return r.putRaw(h, b) }
