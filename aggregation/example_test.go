package aggregation_test

import (
	"fmt"

	"github.com/sovereign-fl/sovereign/aggregation"
)

func ExampleStrategy_Round() {
	s, err := aggregation.ParseStrategy("fedavg", 0)
	if err != nil {
		panic(err)
	}
	global := []float32{1, 1}
	rejected, err := s.Round(global, []aggregation.Update{
		{Client: "hospital-a", Delta: []float32{0.5, -0.5}, Weight: 300},
		{Client: "hospital-b", Delta: []float32{-0.5, 0.5}, Weight: 100},
		{Client: "lab-c", Delta: []float32{1}, Weight: 50},
	})
	fmt.Println(global, err)
	for _, r := range rejected {
		fmt.Println("rejected:", r.Err)
	}
	// Output:
	// [1.25 0.75] <nil>
	// rejected: update from client "lab-c": wrong delta length: delta has 1 values, expected 2
}

func ExampleParseStrategy() {
	for _, spec := range []string{"bulyan:2", "fedprox:0.01", "trimmed:0.7"} {
		s, err := aggregation.ParseStrategy(spec, 0)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(s, "needs", s.MinUpdates(), "updates")
	}
	// Output:
	// rule=bulyan:2 server=fedavg needs 11 updates
	// rule=mean server=fedavg prox_mu=0.01 needs 1 updates
	// error: strategy "trimmed:0.7": trimmed:BETA needs 0 <= BETA < 0.5, got "0.7" (forms: fedavg | fedavgm | fedadam | fedyogi | fedadagrad | fedprox:MU | median | trimmed:BETA | krum:F | multikrum:F[:M] | bulyan:F)
}
