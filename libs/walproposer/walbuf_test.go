package walproposer

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"testing"
	"time"

	"strata.dev/libs/lsn"
)

func TestWALBufferRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const start = lsn.LSN(0x1000028)
	b := NewWALBuffer(start)
	var model []byte // bytes from start
	trimmed := start
	for i := 0; i < 2000; i++ {
		switch rng.Intn(4) {
		case 0, 1:
			p := make([]byte, rng.Intn(3*chunkSize/2))
			rng.Read(p)
			b.Append(p)
			model = append(model, p...)
		case 2:
			end := start + lsn.LSN(len(model))
			trimmed = max(trimmed, trimmed+lsn.LSN(rng.Int63n(int64(end-trimmed)+1)))
			b.Trim(trimmed)
		case 3:
			end := start + lsn.LSN(len(model))
			if b.End() != end || b.Start() != trimmed {
				t.Fatalf("step %d: [%v, %v), want [%v, %v)", i, b.Start(), b.End(), trimmed, end)
			}
			pos := trimmed + lsn.LSN(rng.Int63n(int64(end-trimmed)+1))
			dst := make([]byte, rng.Intn(3*chunkSize))
			n, err := b.ReadAt(dst, pos)
			if err != nil {
				t.Fatal(err)
			}
			want := model[pos-start:]
			if n != min(len(dst), len(want)) || !bytes.Equal(dst[:n], want[:n]) {
				t.Fatalf("step %d: ReadAt(%v) = %d bytes, wrong data", i, pos, n)
			}
		}
	}
	if _, err := b.ReadAt(make([]byte, 1), trimmed-1); trimmed > start && !errors.Is(err, ErrTrimmed) {
		t.Fatalf("read below start: %v", err)
	}
}

func TestWALBufferWait(t *testing.T) {
	b := NewWALBuffer(100)
	go func() {
		time.Sleep(10 * time.Millisecond)
		b.Append([]byte{1, 2, 3})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	end, err := b.WaitBeyond(ctx, 100)
	if err != nil || end != 103 {
		t.Fatalf("WaitBeyond = %v, %v", end, err)
	}
}
