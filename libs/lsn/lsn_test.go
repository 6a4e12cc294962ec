package lsn

import (
	"errors"
	"testing"
)

func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want LSN
		out  string
	}{
		{"0/0", 0, "0/0"},
		{"0/16B9188", 0x16B9188, "0/16B9188"},
		{"0/16b9188", 0x16B9188, "0/16B9188"},
		{"00000001/00000000", 1 << 32, "1/0"},
		{"FFFFFFFF/FEFFFFFF", 0xFFFFFFFFFEFFFFFF, "FFFFFFFF/FEFFFFFF"},
		{"ffffffff/ffffffff", Max, "FFFFFFFF/FFFFFFFF"},
	} {
		got, err := Parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		if got.String() != tc.out {
			t.Errorf("String(%#x) = %q; want %q", uint64(got), got.String(), tc.out)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "/", "0/", "/0", "0", "0/0/0", "g/0", "0/x", "123456789/0", "0/123456789", "-1/0", " 0/0"} {
		if _, err := Parse(in); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) error = %v; want ErrSyntax", in, err)
		}
	}
}

func TestSegmentMath(t *testing.T) {
	const seg = DefaultSegmentSize
	l := MustParse("0/16B9188")
	if got := l.SegmentNumber(seg); got != 1 {
		t.Errorf("segno = %d", got)
	}
	if got := l.SegmentOffset(seg); got != 0x6B9188 {
		t.Errorf("offset = %#x", got)
	}
	if got := l.SegmentStart(seg); got != 0x1000000 {
		t.Errorf("segment start = %v", got)
	}
	if got := l.PageStart(); got != 0x16B8000 {
		t.Errorf("page start = %v", got)
	}
	if got := l.PageOffset(); got != 0x1188 {
		t.Errorf("page offset = %#x", got)
	}
	if got := LSN(0x1001).Align8(); got != 0x1008 {
		t.Errorf("align = %v", got)
	}
	if got := LSN(0x1008).Align8(); got != 0x1008 {
		t.Errorf("align of aligned = %v", got)
	}
	if !LSN(0x2000000).IsSegmentStart(seg) || LSN(0x2000008).IsSegmentStart(seg) {
		t.Error("IsSegmentStart")
	}
	if SegmentLSN(3, 5, seg) != 3*seg+5 {
		t.Error("SegmentLSN")
	}
	if LSN(5).Sub(7) != 0 || LSN(7).Sub(5) != 2 {
		t.Error("Sub")
	}
}

func TestText(t *testing.T) {
	var l LSN
	if err := l.UnmarshalText([]byte("1/2A")); err != nil || l != 0x10000002A {
		t.Fatalf("UnmarshalText = %v, %v", l, err)
	}
	b, _ := l.MarshalText()
	if string(b) != "1/2A" {
		t.Fatalf("MarshalText = %s", b)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0/0", "1/2A", "FFFFFFFF/FFFFFFFF", "x/y", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(l.String())
		if err != nil || back != l {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, l, l.String(), back, err)
		}
	})
}
