// Package pb holds the protobuf messages of the Sovereign wire protocol,
// generated from sovereign.proto. See README.md to regenerate.
package pb

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative sovereign.proto
