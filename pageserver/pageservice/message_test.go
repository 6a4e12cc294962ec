package pageservice

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
)

var sampleRequests = []Request{
	{Tag: TagExists, Header: Header{ReqID: 1, RequestLSN: lsn.Max, NotModifiedSince: 0x1000}, Rel: key.Rel{Spc: 1663, DB: 5, Rel: 16384, Fork: 0}},
	{Tag: TagNblocks, Header: Header{ReqID: 2, RequestLSN: 0x2000, NotModifiedSince: 0x2000}, Rel: key.Rel{Spc: 1664, Rel: 1262, Fork: 1}},
	{Tag: TagGetPage, Header: Header{ReqID: 3, RequestLSN: 0x3000, NotModifiedSince: 0x10}, Rel: key.Rel{Spc: 1663, DB: 5, Rel: 1259, Fork: 2}, Block: 7},
	{Tag: TagDBSize, Header: Header{ReqID: 4, RequestLSN: lsn.Max}, DB: 5},
	{Tag: TagGetSlruSegment, Header: Header{ReqID: 5, RequestLSN: lsn.Max}, SlruKind: key.MultiXactOffsets, Segno: 0x12},
}

func TestRequestRoundTrip(t *testing.T) {
	for _, v := range []Version{V2, V3} {
		for _, want := range sampleRequests {
			b := AppendRequest(nil, v, want)
			got, err := DecodeRequest(v, b)
			if err != nil {
				t.Fatalf("v%d %s: %v", v, want.Tag, err)
			}
			if v == V2 {
				want.ReqID = 0
			}
			if got != want {
				t.Errorf("v%d: got %+v, want %+v", v, got, want)
			}
			// One byte more or less is refused.
			if _, err := DecodeRequest(v, b[:len(b)-1]); !errors.Is(err, ErrMalformed) {
				t.Errorf("v%d %s cut short: %v", v, want.Tag, err)
			}
			if _, err := DecodeRequest(v, append(b, 0)); !errors.Is(err, ErrMalformed) {
				t.Errorf("v%d %s with a trailing byte: %v", v, want.Tag, err)
			}
		}
	}
}

// TestRequestBytes pins the v3 layout of PS §6.2 with a GetPage.
func TestRequestBytes(t *testing.T) {
	b := AppendRequest(nil, V3, sampleRequests[2])
	want := "02" + "0000000000000003" + "0000000000003000" + "0000000000000010" +
		"0000067f" + "00000005" + "000004eb" + "02" + "00000007"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestDecodeRequestRefuses(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":     {},
		"tag":       {9, 0, 0},
		"slru kind": append(append([]byte{4}, make([]byte, 24)...), 3, 0, 0, 0, 0),
	} {
		if _, err := DecodeRequest(V3, b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := DecodeRequest(Version(1), AppendRequest(nil, V2, sampleRequests[0])); !errors.Is(err, ErrMalformed) {
		t.Errorf("version 1: %v", err)
	}
}

func TestResponseRoundTrip(t *testing.T) {
	page := bytes.Repeat([]byte{0xAB}, BlockSize)
	seg := bytes.Repeat([]byte{0xCD}, 3*BlockSize)
	for _, v := range []Version{V2, V3} {
		cases := []struct {
			b     []byte
			check func(Response) bool
		}{
			{AppendExists(nil, v, sampleRequests[0], true), func(r Response) bool { return r.Tag == RespExists && r.Exists }},
			{AppendNblocks(nil, v, sampleRequests[1], 42), func(r Response) bool { return r.Tag == RespNblocks && r.NBlocks == 42 }},
			{AppendGetPage(nil, v, sampleRequests[2], page), func(r Response) bool { return r.Tag == RespGetPage && bytes.Equal(r.Page, page) }},
			{AppendDBSize(nil, v, sampleRequests[3], 1<<40), func(r Response) bool { return r.Tag == RespDBSize && r.DBSize == 1<<40 }},
			{AppendSlruSegment(nil, v, sampleRequests[4], seg), func(r Response) bool {
				return r.Tag == RespGetSlruSegment && r.NBlocks == 3 && bytes.Equal(r.Segment, seg)
			}},
			{AppendErrorResponse(nil, v, sampleRequests[2], "no such thing"), func(r Response) bool { return r.Tag == RespError && r.Error == "no such thing" }},
		}
		for i, c := range cases {
			r, err := DecodeResponse(v, c.b)
			if err != nil {
				t.Fatalf("v%d case %d: %v", v, i, err)
			}
			if !c.check(r) {
				t.Errorf("v%d case %d: %+v", v, i, r)
			}
			if v == V3 {
				req := sampleRequests[min(i, 4)]
				if r.Tag == RespError {
					req = Request{Header: sampleRequests[2].Header}
				}
				if r.Request != req {
					t.Errorf("v3 case %d: echo %+v, want %+v", i, r.Request, req)
				}
			}
			if _, err := DecodeResponse(v, c.b[:len(c.b)-1]); !errors.Is(err, ErrMalformed) {
				t.Errorf("v%d case %d cut short: %v", v, i, err)
			}
		}
	}
}

func fuzzSeeds(f *testing.F) {
	for _, v := range []Version{V2, V3} {
		for _, r := range sampleRequests {
			f.Add(uint8(v), AppendRequest(nil, v, r))
		}
		f.Add(uint8(v), AppendExists(nil, v, sampleRequests[0], false))
		f.Add(uint8(v), AppendNblocks(nil, v, sampleRequests[1], 1))
		f.Add(uint8(v), AppendGetPage(nil, v, sampleRequests[2], make([]byte, BlockSize)))
		f.Add(uint8(v), AppendDBSize(nil, v, sampleRequests[3], 8192))
		f.Add(uint8(v), AppendSlruSegment(nil, v, sampleRequests[4], make([]byte, BlockSize)))
		f.Add(uint8(v), AppendErrorResponse(nil, v, sampleRequests[0], "x"))
	}
	f.Add(uint8(3), []byte{})
	f.Add(uint8(3), []byte{105, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
}

// FuzzDecodeRequest: requests are untrusted bytes from the network; a
// decoded request encodes back to the same bytes.
func FuzzDecodeRequest(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, v uint8, b []byte) {
		r, err := DecodeRequest(Version(v), b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		if got := AppendRequest(nil, Version(v), r); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x, decoded from %x", got, b)
		}
	})
}

// FuzzDecodeResponse: the client must survive whatever a server sends.
func FuzzDecodeResponse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, v uint8, b []byte) {
		r, err := DecodeResponse(Version(v), b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		if r.Tag == RespGetPage && len(r.Page) != BlockSize {
			t.Fatalf("page of %d bytes", len(r.Page))
		}
		if r.Tag == RespGetSlruSegment && len(r.Segment) != int(r.NBlocks)*BlockSize {
			t.Fatalf("segment of %d bytes for %d blocks", len(r.Segment), r.NBlocks)
		}
	})
}
