package replication

import (
	"reflect"
	"testing"
	"time"

	"strata.dev/libs/pamsg"
)

func TestRoundTrips(t *testing.T) {
	x := append(AppendXLogDataHeader(nil, 0x100, 0x200, 42), 1, 2, 3)
	m, err := DecodeServerMessage(x)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*XLogData); got.WALStart != 0x100 || got.WALEnd != 0x200 || got.SendTime != 42 || string(got.Data) != "\x01\x02\x03" {
		t.Fatalf("XLogData = %+v", got)
	}
	k := Keepalive{WALEnd: 7, SendTime: 8, ReplyRequested: true}
	m, err = DecodeServerMessage(k.Append(nil))
	if err != nil || *m.(*Keepalive) != k {
		t.Fatalf("keepalive = %+v, %v", m, err)
	}

	s := StandbyStatus{WriteLSN: 1, FlushLSN: 2, ApplyLSN: 3, ReplyTime: 4, ReplyRequested: true}
	c, err := DecodeClientMessage(s.Append(nil))
	if err != nil || *c.(*StandbyStatus) != s {
		t.Fatalf("status = %+v, %v", c, err)
	}
	h := HotStandbyFeedback{ReplyTime: 5, Xmin: 6, XminEpoch: 1, CatalogXmin: 7, CatalogXminEpoch: 2}
	c, err = DecodeClientMessage(h.Append(nil))
	if err != nil || *c.(*HotStandbyFeedback) != h {
		t.Fatalf("hs feedback = %+v, %v", c, err)
	}
	if full := h.Full(); full.Xmin != 1<<32|6 || full.CatalogXmin != 2<<32|7 || full.TS != 5 {
		t.Fatalf("Full = %+v", full)
	}
	f := pamsg.PageserverFeedback{LastReceivedLSN: 9, RemoteConsistentLSN: 8, ReplyTime: time.Unix(1, 0).UTC()}
	c, err = DecodeClientMessage(AppendPageserverFeedback(nil, &f))
	if err != nil || !reflect.DeepEqual(*c.(*pamsg.PageserverFeedback), f) {
		t.Fatalf("ps feedback = %+v, %v", c, err)
	}
	if c, err := DecodeClientMessage([]byte{'q', 1}); c != nil || err != nil {
		t.Fatalf("unknown tag = %v, %v; want ignored", c, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, b := range [][]byte{nil, {'w', 1}, {'k', 1, 2}, {'x'}} {
		if _, err := DecodeServerMessage(b); err == nil {
			t.Errorf("DecodeServerMessage(%x) succeeded", b)
		}
	}
	for _, b := range [][]byte{nil, {'r', 1}, {'h'}, {'z', 1}} {
		if _, err := DecodeClientMessage(b); err == nil {
			t.Errorf("DecodeClientMessage(%x) succeeded", b)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(AppendXLogDataHeader(nil, 1, 2, 3))
	f.Add(Keepalive{WALEnd: 1}.Append(nil))
	f.Add(StandbyStatus{FlushLSN: 1}.Append(nil))
	f.Add(HotStandbyFeedback{Xmin: 1}.Append(nil))
	f.Add(AppendPageserverFeedback(nil, &pamsg.PageserverFeedback{LastReceivedLSN: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeServerMessage(b)
		_, _ = DecodeClientMessage(b)
	})
}
