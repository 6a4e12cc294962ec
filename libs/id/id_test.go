package id

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	const s = "9e4c8f36063c6c6e93bc20d65a820f3d"
	i, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if i.String() != s {
		t.Fatalf("String = %s", i)
	}
	up, err := Parse("9E4C8F36063C6C6E93BC20D65A820F3D")
	if err != nil || up != i {
		t.Fatalf("uppercase parse = %v, %v", up, err)
	}
	for _, bad := range []string{"", "9e4c", s + "0", "9e4c8f36063c6c6e93bc20d65a820f3g"} {
		if _, err := Parse(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v; want ErrSyntax", bad, err)
		}
	}
	if _, err := FromBytes(make([]byte, 15)); err == nil {
		t.Error("FromBytes(15 bytes) succeeded")
	}
	if Generate() == Generate() || Generate().IsZero() {
		t.Error("Generate is not random")
	}
}
