package worker

import (
	"reflect"
	"testing"
)

// fill sets every exported field of v (recursively) to a non-zero value.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	case reflect.String:
		v.SetString("x" + string(rune('a'+*n%26)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n + 1))
	case reflect.Uint8, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n + 1))
	case reflect.Float64:
		v.SetFloat(float64(*n) + 0.5)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), n)
		v.Set(s)
	case reflect.Array:
		for i := range v.Len() {
			fill(v.Index(i), n)
		}
	}
}

// The worker's Announce and its wire form carry the same fields: a round
// trip keeps every one (a field missing from toWire would change the
// announcement digest the worker confirms with the coordinator replicas;
// one missing from fromWire would be lost on arrival).
func TestAnnounceWireRoundTripKeepsEveryField(t *testing.T) {
	var a Announce
	n := 0
	fill(reflect.ValueOf(&a).Elem(), &n)
	back := fromWire(toWire(&a))
	typ := reflect.TypeOf(a)
	for i := range typ.NumField() {
		if got, want := reflect.ValueOf(*back).Field(i).Interface(), reflect.ValueOf(a).Field(i).Interface(); !reflect.DeepEqual(got, want) {
			t.Errorf("Announce.%s: %v after the wire round trip, want %v", typ.Field(i).Name, got, want)
		}
	}
}
