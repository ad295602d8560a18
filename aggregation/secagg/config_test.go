package secagg

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	base := testConfig(10, 5)
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		field string
		mut   func(*Config)
	}{
		{"Clients", func(c *Config) { c.Clients = c.Clients[:1] }},
		{"Clients", func(c *Config) { c.Clients = []uint32{0, 1, 2} }},
		{"Clients", func(c *Config) { c.Clients = []uint32{3, 2, 5} }},
		{"Clients", func(c *Config) { c.Clients = []uint32{2, 2, 5} }},
		{"Degree", func(c *Config) { c.Degree = 3 }},
		{"Degree", func(c *Config) { c.Degree = 10 }},
		{"Threshold", func(c *Config) { c.Threshold = 1 }},
		{"Threshold", func(c *Config) { c.Degree = 4; c.Threshold = 6 }},
		{"Bits", func(c *Config) { c.Bits = 40 }},
		{"Bits", func(c *Config) { c.Bits = 7 }},
		{"ClipRange", func(c *Config) { c.ClipRange = -1 }},
		{"MaxWeight", func(c *Config) { c.MaxWeight = 0 }},
		{"Dim", func(c *Config) { c.Dim = 0 }},
		{"StageTimeout", func(c *Config) { c.StageTimeout = -1 }},
	}
	for _, tc := range cases {
		c := base
		c.Clients = append([]uint32(nil), base.Clients...)
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Fatalf("mutating %s: err = %v, want one naming the field", tc.field, err)
		}
		if _, err := NewServer(c); err == nil {
			t.Fatalf("NewServer accepted bad %s", tc.field)
		}
	}
	// Bits too small for the number of clients.
	c := testConfig(300, 5)
	c.Bits = 9
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "Bits") {
		t.Fatalf("9 bits for 300 clients: err = %v", err)
	}
	if _, err := NewClient(base, 4, seeded(1)); err == nil {
		t.Fatal("NewClient accepted an unsampled client index")
	}
}
