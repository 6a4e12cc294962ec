package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"strata.dev/libs/id"
)

func testFile() *File {
	return &File{
		TenantID:    id.Generate().String(),
		Pageserver:  Daemon{ID: 1, ListenPG: "127.0.0.1:64000", ListenGRPC: "127.0.0.1:64001"},
		Safekeepers: []Daemon{{ID: 1, ListenPG: "127.0.0.1:5454", ListenGRPC: "127.0.0.1:5455"}},
	}
}

// Concurrent updates each see the others' changes: none is lost.
func TestUpdateConcurrent(t *testing.T) {
	dir := t.TempDir()
	if err := testFile().Save(dir); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			errs <- Update(context.Background(), dir, func(f *File) error {
				return f.AddTimeline(fmt.Sprintf("t%d", i), id.Generate())
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	f, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Timelines) != 20 {
		t.Errorf("%d timelines after 20 concurrent updates: %v", len(f.Timelines), f.TimelineNames())
	}
}

// A failing update, or one that makes the file invalid, writes nothing.
func TestUpdateFails(t *testing.T) {
	dir := t.TempDir()
	if err := testFile().Save(dir); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := Update(context.Background(), dir, func(f *File) error {
		f.Timelines["x"] = id.Generate().String()
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update: %v", err)
	}
	err := Update(context.Background(), dir, func(f *File) error {
		f.Computes["bad name"] = Compute{Timeline: "main", Port: 1}
		return nil
	})
	if err == nil {
		t.Fatal("an invalid compute name was saved")
	}
	f, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Timelines) != 0 || len(f.Computes) != 0 {
		t.Errorf("failed updates left %v %v", f.Timelines, f.Computes)
	}
	if err := Update(context.Background(), t.TempDir(), func(*File) error { return nil }); !errors.Is(err, ErrNoCluster) {
		t.Errorf("Update without a file: %v", err)
	}
}

func TestValidateComputes(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Compute
		ok   bool
	}{
		{"main", Compute{Timeline: "main", Port: 55432}, true},
		{"ro-1", Compute{Timeline: "main", Port: 55433, LSN: "0/16B5A50"}, true},
		{"x", Compute{Port: 55432}, false},
		{"x", Compute{Timeline: "main", Port: 0}, false},
		{"x", Compute{Timeline: "main", Port: 70000}, false},
		{"x", Compute{Timeline: "main", Port: 1, LSN: "16B5A50"}, false},
		{"a/b", Compute{Timeline: "main", Port: 1}, false},
		{"", Compute{Timeline: "main", Port: 1}, false},
	} {
		f := testFile()
		f.Computes = map[string]Compute{tc.name: tc.c}
		if err := f.Validate(); (err == nil) != tc.ok {
			t.Errorf("compute %q %+v: Validate = %v, want ok=%v", tc.name, tc.c, err, tc.ok)
		}
	}
}
