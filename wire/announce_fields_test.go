package wire

import (
	"reflect"
	"testing"

	"github.com/sovereign-fl/sovereign/internal/reflectfill"
)

// Every field of the one Announce type reaches the RoundAnnounce (a field
// added to Announce but not to AnnounceToPB would not reach the worker, and
// the digest the worker confirms with the coordinator replicas would not
// cover it): zeroing any one changes the wire form.
func TestAnnounceEveryFieldReachesTheWire(t *testing.T) {
	var a Announce
	reflectfill.Fill(&a)
	a.Sampled = sampleAnnounce(t).Sampled
	full, err := AnnounceToPB(&a)
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(a)
	for i := range typ.NumField() {
		b := a
		reflect.ValueOf(&b).Elem().Field(i).Set(reflect.Zero(typ.Field(i).Type))
		m, err := AnnounceToPB(&b)
		if err != nil {
			t.Fatalf("%s zeroed: %v", typ.Field(i).Name, err)
		}
		if reflect.DeepEqual(m, full) {
			t.Errorf("Announce.%s does not reach the RoundAnnounce", typ.Field(i).Name)
		}
	}
}

// A statistics round's announcement, with its own fields, survives the
// round trip (TestAnnounceRoundTrip covers a model round).
func TestStatisticsAnnounceRoundTrip(t *testing.T) {
	s := *sampleAnnounce(t)
	s.Purpose, s.StatsMaxRows, s.SchemaHash, s.Study = PurposeStatistics, 500, [32]byte{1, 2}, "sepsis"
	s.SecAgg.Dim = 17
	m, err := AnnounceToPB(&s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := AnnounceFromPB(m)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*back, s) {
		t.Errorf("statistics announce: %+v after the round trip, want %+v", *back, s)
	}
}
