package pgtime

import (
	"testing"
	"time"
)

func TestEpoch(t *testing.T) {
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := FromTime(epoch); got != 0 {
		t.Fatalf("FromTime(2000-01-01) = %d", got)
	}
	if got := ToTime(1_000_000); !got.Equal(epoch.Add(time.Second)) {
		t.Fatalf("ToTime(1e6) = %v", got)
	}
	now := time.Now().Truncate(time.Microsecond)
	if back := ToTime(FromTime(now)); !back.Equal(now) {
		t.Fatalf("round trip %v -> %v", now, back)
	}
}
