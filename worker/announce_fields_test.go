package worker

import (
	"reflect"
	"testing"

	"github.com/sovereign-fl/sovereign/internal/reflectfill"
)

// The worker's Announce and its wire form carry the same fields: a round
// trip keeps every one (a field missing from toWire would change the
// announcement digest the worker confirms with the coordinator replicas;
// one missing from fromWire would be lost on arrival).
func TestAnnounceWireRoundTripKeepsEveryField(t *testing.T) {
	var a Announce
	reflectfill.Fill(&a)
	back := fromWire(toWire(&a))
	typ := reflect.TypeOf(a)
	for i := range typ.NumField() {
		if got, want := reflect.ValueOf(*back).Field(i).Interface(), reflect.ValueOf(a).Field(i).Interface(); !reflect.DeepEqual(got, want) {
			t.Errorf("Announce.%s: %v after the wire round trip, want %v", typ.Field(i).Name, got, want)
		}
	}
}
