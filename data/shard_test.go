package data

import (
	"slices"
	"strings"
	"testing"
)

// TestLoadShards: digits?shard=I/N gives N disjoint shards that together
// are the digits set, train and test; bad options are refused.
func TestLoadShards(t *testing.T) {
	train, test, err := Load("digits")
	if err != nil {
		t.Fatal(err)
	}
	var gotX []float32
	var gotY []int32
	n := 0
	for i := 1; i <= 3; i++ {
		tr, te, err := Load("digits?shard=" + string(rune('0'+i)) + "/3")
		if err != nil {
			t.Fatal(err)
		}
		if tr.Classes != train.Classes || tr.C != train.C || tr.H != train.H || tr.W != train.W {
			t.Fatalf("shard %d lost the shape: %+v", i, tr)
		}
		gotX, gotY = append(gotX, tr.X...), append(gotY, tr.Y...)
		n += te.N
	}
	if !slices.Equal(gotX, train.X) || !slices.Equal(gotY, train.Y) || n != test.N {
		t.Fatal("the three shards are not the train split, in order, and the test split")
	}
	for _, bad := range []string{"digits?shard=0/3", "digits?shard=4/3", "digits?shard=1", "digits?seed=1", "digits?shard=a/b", "mnist?shard=1/3&x=1"} {
		if _, _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "shard=I/N") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
