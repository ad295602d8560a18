package coordinator

import (
	"reflect"
	"testing"

	"github.com/sovereign-fl/sovereign/internal/reflectfill"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
)

// Every field of the coordinator's Announce reaches its wire form: zeroing
// any one changes WireAnnounce's output (a field added to Announce but not
// to the mapping would not, and workers would then check a different
// announcement than the one Raft committed).
func TestWireAnnounceMapsEveryField(t *testing.T) {
	var a Announce
	reflectfill.Fill(&a)
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
