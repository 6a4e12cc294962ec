package watch

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWaitWakesOnSet(t *testing.T) {
	var w Value[int]
	done := make(chan int)
	go func() {
		v, err := w.Wait(context.Background(), func(v int) bool { return v >= 3 })
		if err != nil {
			t.Error(err)
		}
		done <- v
	}()
	for i := 1; i <= 3; i++ {
		w.Set(i)
	}
	select {
	case v := <-done:
		if v != 3 {
			t.Fatalf("Wait returned %d", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not wake up")
	}
}

func TestWaitContext(t *testing.T) {
	var w Value[int]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Wait(ctx, func(v int) bool { return v > 0 }); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestUpdate(t *testing.T) {
	var w Value[int]
	_, ch := w.Watch()
	w.Update(func(v *int) bool { return false })
	select {
	case <-ch:
		t.Fatal("woken without a change")
	default:
	}
	w.Update(func(v *int) bool { *v = 5; return true })
	<-ch
	if w.Get() != 5 {
		t.Fatal("value not updated")
	}
}
