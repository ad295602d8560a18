package coordinator

import (
	"reflect"
	"testing"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
)

// fill sets every field of v (recursively) to a non-zero value.
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

// Every field of the coordinator's Announce reaches its wire form: zeroing
// any one changes WireAnnounce's output (a field added to Announce but not
// to the mapping would not, and workers would then check a different
// announcement than the one Raft committed).
func TestWireAnnounceMapsEveryField(t *testing.T) {
	var a Announce
	n := 0
	fill(reflect.ValueOf(&a).Elem(), &n)
	a.SecAgg = secagg.Config{Round: 1}
	full := WireAnnounce(&a)
	typ := reflect.TypeOf(a)
	for i := range typ.NumField() {
		if typ.Field(i).Name == "SecAgg" {
			continue // passed through whole
		}
		b := a
		reflect.ValueOf(&b).Elem().Field(i).Set(reflect.Zero(typ.Field(i).Type))
		if reflect.DeepEqual(WireAnnounce(&b), full) {
			t.Errorf("Announce.%s does not reach the wire form (WireAnnounce ignores it)", typ.Field(i).Name)
		}
	}
}
