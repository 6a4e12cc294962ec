package walredo_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/redo"
	"strata.dev/pageserver/value"
	"strata.dev/test/daemons"
)

// request is a page to rebuild and the page a healthy pool returned for
// it, the reference every later answer must equal.
type request struct {
	r    value.Reconstruction
	want []byte
}

// testRedoPool puts the pool through what a pageserver meets: killed
// processes, bad requests, a hung process and many concurrent callers.
// Every page must come back equal to what a healthy pool returned.
func testRedoPool(t *testing.T, f fixture) {
	reqs := processRequests(t, f)

	t.Run("KilledProcesses", func(t *testing.T) { testKilledProcesses(t, reqs) })
	t.Run("BadRequests", func(t *testing.T) { testBadRequests(t, reqs) })
	t.Run("HungProcess", func(t *testing.T) { testHungProcess(t, reqs) })
	t.Run("ConcurrentCallers", func(t *testing.T) { testConcurrentCallers(t, reqs) })
	t.Run("IdleStop", func(t *testing.T) { testIdleStop(t, reqs) })
	t.Run("CanceledInto", func(t *testing.T) { testCanceledInto(t, reqs) })
}

// testCanceledInto: a caller that gives up (its context ends) gets its
// Into buffer back for good: the answer that comes later is dropped, not
// written there, while callers that wait get theirs in their buffers.
func testCanceledInto(t *testing.T, reqs []request) {
	pool := daemons.NewRedoPool(t, processOptions(t, 1))
	type gaveUp struct {
		buf, at []byte // the buffer, and what it held when the call returned
	}
	var mu sync.Mutex
	var canceled []gaveUp
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 2))
			for range 200 {
				buf := bytes.Repeat([]byte{0xAA}, 8192)
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(200))*time.Microsecond)
				err := callInto(ctx, pool, reqs[rng.IntN(len(reqs))], buf)
				cancel()
				switch {
				case errors.Is(err, context.DeadlineExceeded):
					mu.Lock()
					canceled = append(canceled, gaveUp{buf, bytes.Clone(buf)})
					mu.Unlock()
				case err != nil:
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Every answer still in the pipe is read by the next callers.
	for i := range 20 {
		if err := callInto(context.Background(), pool, reqs[i%len(reqs)], make([]byte, 8192)); err != nil {
			t.Fatal(err)
		}
	}
	if len(canceled) == 0 {
		t.Fatal("no call gave up: the test shows nothing")
	}
	for i, g := range canceled {
		if !bytes.Equal(g.buf, g.at) {
			t.Fatalf("call %d of %d that gave up: its buffer was written after it returned", i, len(canceled))
		}
	}
	t.Logf("%d of 3200 calls gave up; none of their buffers changed afterwards", len(canceled))
}

// processRequests samples pages of every relation whose rebuild needs a
// redo process, with their pages from a fresh pool.
func processRequests(t *testing.T, f fixture) []request {
	t.Helper()
	ctx := context.Background()
	pool := daemons.NewRedoPool(t, processOptions(t, 1))
	at, _ := f.store.LastRecordLSN()
	var reqs []request
	for _, rel := range slices.SortedFunc(maps.Keys(f.rels), func(a, b key.Rel) int { return strings.Compare(a.String(), b.String()) }) {
		if rel.Fork == key.ForkFSM {
			continue
		}
		for blk := uint32(0); blk < 8; blk++ {
			r, err := f.store.Get(ctx, key.RelBlock(rel, blk), at)
			if err != nil {
				break // past the end of the relation
			}
			if !slices.ContainsFunc(r.Records, func(v value.Versioned) bool { return v.Record.Kind == value.Postgres }) {
				continue
			}
			page, err := pool.Reconstruct(ctx, r)
			if err != nil {
				t.Fatalf("%s block %d: %v", rel, blk, err)
			}
			reqs = append(reqs, request{r: r, want: bytes.Clone(page)})
		}
	}
	if len(reqs) < 50 {
		t.Fatalf("only %d pages need a redo process", len(reqs))
	}
	t.Logf("%d pages that need a redo process", len(reqs))
	return reqs
}

// call rebuilds req and checks the answer.
func call(ctx context.Context, pool *redo.Pool, req request) error {
	return callInto(ctx, pool, req, nil)
}

// callInto is call with the page built in into (nil: wherever the pool
// likes); with into, the answer must be there.
func callInto(ctx context.Context, pool *redo.Pool, req request, into []byte) error {
	r := req.r
	r.Into = into
	page, err := pool.Reconstruct(ctx, r)
	if err != nil {
		return err
	}
	if !bytes.Equal(page, req.want) {
		return errors.New(req.r.Key.String() + ": page differs from the reference")
	}
	if into != nil && &page[0] != &into[0] {
		return errors.New(req.r.Key.String() + ": page rebuilt by a redo process is not in Into")
	}
	return nil
}

// testKilledProcesses kills -9 the redo process in the middle of requests
// several times: every caller still gets its page (retried on a new
// process), and nothing is left behind.
func testKilledProcesses(t *testing.T, reqs []request) {
	ctx := context.Background()
	opts := processOptions(t, 1)
	pool, err := redo.New(opts)
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var calls, failures atomic.Int64
	// done[c] counts caller c's finished calls: a kill waits until every
	// caller finished a call since the previous kill, so no request meets
	// two kills (the pool retries once, by design).
	var done [4]atomic.Int64
	var wg sync.WaitGroup
	for c := range done {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if err := call(ctx, pool, reqs[i%len(reqs)]); err != nil {
					failures.Add(1)
					t.Error(err)
				}
				done[c].Add(1)
			}
		})
	}
	progressed := func(since [4]int64) bool {
		for c := range done {
			if done[c].Load() <= since[c] {
				return false
			}
		}
		return true
	}
	// Kill processes seen twice, 150 ms apart: serving, past their start.
	killed, seen := map[int]bool{}, map[int]bool{}
	var atKill [4]int64
	for len(killed) < 5 {
		time.Sleep(150 * time.Millisecond)
		if !progressed(atKill) {
			continue
		}
		for _, pid := range redoPIDs(t, opts.Dir) {
			if !seen[pid] {
				seen[pid] = true
			} else if !killed[pid] {
				killed[pid] = true
				for c := range done {
					atKill[c] = done[c].Load()
				}
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				break // one kill, then every caller gets through a call
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests while %d redo processes were killed, %d failed", calls.Load(), len(killed), failures.Load())

	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	if pids := redoPIDs(t, opts.Dir); len(pids) > 0 {
		t.Errorf("redo processes %v still running after Close", pids)
	}
	checkNoLeftovers(t, opts.Dir, killed)
}

// testBadRequests sends requests the pool must refuse or that make the
// process fail, each time followed by a good request.
func testBadRequests(t *testing.T, reqs []request) {
	ctx := context.Background()
	opts := processOptions(t, 1)
	pool := daemons.NewRedoPool(t, opts)
	good := reqs[0]
	served := func(what string) {
		t.Helper()
		if err := call(ctx, pool, good); err != nil {
			t.Fatalf("after %s: %v", what, err)
		}
	}
	served("nothing")

	// A record whose CRC does not match: refused before any process sees it.
	r := withRecords(good.r)
	last := &r.Records[len(r.Records)-1]
	last.Record.Raw[len(last.Record.Raw)-1] ^= 0xFF
	if _, err := pool.Reconstruct(ctx, r); !errors.Is(err, redo.ErrInvalidRequest) || !strings.Contains(err.Error(), "CRC") {
		t.Errorf("corrupt record: %v, want a CRC error wrapping ErrInvalidRequest", err)
	}
	served("a corrupt record")

	// A record of another page.
	other := slices.IndexFunc(reqs, func(q request) bool { return q.r.Key != good.r.Key })
	r = withRecords(good.r)
	r.Records = append(r.Records, reqs[other].r.Records[len(reqs[other].r.Records)-1])
	if _, err := pool.Reconstruct(ctx, r); !errors.Is(err, redo.ErrInvalidRequest) || !strings.Contains(err.Error(), "does not reference") {
		t.Errorf("record of another page: %v, want ErrInvalidRequest saying so", err)
	}
	served("a record of another page")

	// No base image and a first record that does not initialise the page.
	r = withRecords(good.r)
	r.HasImage, r.Image = false, nil
	for len(r.Records) > 0 && r.Records[0].Record.WillInit {
		r.Records = r.Records[1:]
	}
	if len(r.Records) > 0 {
		if _, err := pool.Reconstruct(ctx, r); !errors.Is(err, redo.ErrInvalidRequest) || !strings.Contains(err.Error(), "does not initialise") {
			t.Errorf("no base image: %v, want ErrInvalidRequest saying the page is not initialised", err)
		}
	}

	// A well-formed heap insert with a nonsense offset: PostgreSQL's redo
	// gives up, the process dies, the pool says why and replaces it.
	i := slices.IndexFunc(reqs, func(q request) bool { return lastIsHeapInsert(q.r) })
	if i < 0 {
		t.Fatal("no page whose last record is a heap insert")
	}
	r = withRecords(reqs[i].r)
	last = &r.Records[len(r.Records)-1]
	rec, err := walrecord.Decode(last.Record.Raw, last.LSN, last.LSN)
	if err != nil {
		t.Fatal(err)
	}
	off := len(last.Record.Raw) - len(rec.MainData) // xl_heap_insert.offnum
	binary.LittleEndian.PutUint16(last.Record.Raw[off:], 0x7FF0)
	binary.LittleEndian.PutUint32(last.Record.Raw[20:], wal.RecordCRC(last.Record.Raw))
	before := redoPIDs(t, opts.Dir)
	_, err = pool.Reconstruct(ctx, r)
	if !errors.Is(err, redo.ErrProcess) || !strings.Contains(err.Error(), "offset") {
		t.Errorf("garbage heap insert: %v, want ErrProcess with PostgreSQL's message", err)
	}
	served("a garbage heap insert")
	if after := redoPIDs(t, opts.Dir); len(after) != 1 || slices.Contains(before, after[0]) {
		t.Errorf("redo processes %v before, %v after: want the failed one replaced", before, after)
	}

	// Where heap inserts are applied in Go, the same record is refused
	// with PostgreSQL's reason, and no process is involved.
	goPool := daemons.NewRedoPool(t, daemons.RedoOptions(t, 1)) // goredo on, the default
	if _, err := goPool.Reconstruct(ctx, r); !errors.Is(err, redo.ErrInvalidRequest) || !strings.Contains(err.Error(), "invalid max offset number") {
		t.Errorf("garbage heap insert applied in Go: %v, want ErrInvalidRequest with PostgreSQL's reason", err)
	}
}

// testHungProcess stops the redo process (SIGSTOP): the request times
// out, the process is killed and the retry on a new one succeeds; with
// every new process stopped too, the caller gets a timeout error.
func testHungProcess(t *testing.T, reqs []request) {
	ctx := context.Background()
	opts := processOptions(t, 1)
	opts.Timeout = time.Second
	pool := daemons.NewRedoPool(t, opts)
	if err := pool.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	hung := redoPIDs(t, opts.Dir)
	for _, pid := range hung {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	if err := call(ctx, pool, reqs[1]); err != nil {
		t.Fatalf("with the redo process stopped: %v (want the retry on a new process to succeed)", err)
	}
	if now := redoPIDs(t, opts.Dir); len(now) != 1 || slices.Contains(hung, now[0]) {
		t.Errorf("redo processes %v, stopped %v: want the stopped one replaced", now, hung)
	}

	// Stop the process and keep a replacement from starting (its template
	// is moved aside): the request times out, its retry cannot start, and
	// the caller's error says the request timed out.
	for _, pid := range redoPIDs(t, opts.Dir) {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	tmpl := filepath.Join(opts.Dir, "template")
	if err := os.Rename(tmpl, tmpl+".aside"); err != nil {
		t.Fatal(err)
	}
	_, err := pool.Reconstruct(ctx, reqs[2].r)
	if err := os.Rename(tmpl+".aside", tmpl); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, redo.ErrProcess) || !strings.Contains(err.Error(), "request timed out") {
		t.Errorf("process stopped, none can start: %v, want ErrProcess saying the request timed out", err)
	}
	for _, pid := range redoPIDs(t, opts.Dir) {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	if err := call(ctx, pool, reqs[3]); err != nil {
		t.Errorf("after the timeouts: %v", err)
	}
}

// testConcurrentCallers runs 64 callers for 10 seconds on a pool of two
// processes: every answer correct, nobody stuck.
func testConcurrentCallers(t *testing.T, reqs []request) {
	ctx := context.Background()
	pool := daemons.NewRedoPool(t, processOptions(t, 2))
	deadline := time.Now().Add(10 * time.Second)
	var calls atomic.Int64
	var wg sync.WaitGroup
	for c := range 64 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for time.Now().Before(deadline) {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a deadlock fails, not hangs
				var into []byte
				if rng.IntN(2) == 0 {
					into = make([]byte, 8192)
				}
				err := callInto(cctx, pool, reqs[rng.IntN(len(reqs))], into)
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
				calls.Add(1)
			}
		})
	}
	wg.Wait()
	t.Logf("64 callers, 10 s: %d pages rebuilt (%.0f/s), %d processes", calls.Load(), float64(calls.Load())/10, pool.Processes())
	if pool.Processes() != 2 {
		t.Errorf("%d redo processes under load, want the pool's 2", pool.Processes())
	}
}

// testIdleStop checks that idle processes are stopped and their scratch
// copies removed, and that the next request starts a new one.
func testIdleStop(t *testing.T, reqs []request) {
	ctx := context.Background()
	opts := processOptions(t, 2)
	opts.IdleTimeout = 300 * time.Millisecond
	pool := daemons.NewRedoPool(t, opts)
	if err := call(ctx, pool, reqs[0]); err != nil {
		t.Fatal(err)
	}
	pids := redoPIDs(t, opts.Dir)
	deadline := time.Now().Add(10 * time.Second)
	for pool.Processes() > 0 || len(redoPIDs(t, opts.Dir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d redo processes still running after 10 s idle", pool.Processes())
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := map[int]bool{}
	for _, pid := range pids {
		seen[pid] = true
	}
	waitNoLeftovers(t, opts.Dir, seen)
	if err := call(ctx, pool, reqs[1]); err != nil {
		t.Errorf("after the idle stop: %v", err)
	}
}

// processOptions are pool options for the tests of the processes: every
// PostgreSQL record goes to one (NoGoRedo), even those goredo would apply.
func processOptions(t *testing.T, processes int) redo.Options {
	t.Helper()
	opts := daemons.RedoOptions(t, processes)
	opts.NoGoRedo = true
	return opts
}

// withRecords copies r with its own records and record bytes.
func withRecords(r value.Reconstruction) value.Reconstruction {
	r.Records = slices.Clone(r.Records)
	for i := range r.Records {
		r.Records[i].Record.Raw = bytes.Clone(r.Records[i].Record.Raw)
	}
	return r
}

func lastIsHeapInsert(r value.Reconstruction) bool {
	last := r.Records[len(r.Records)-1]
	if last.Record.Kind != value.Postgres {
		return false
	}
	h, err := wal.DecodeRecordHeader(last.Record.Raw)
	return err == nil && h.RmID == walrecord.RmHeap && h.Info&0x70 == 0 // XLOG_HEAP_INSERT
}

// redoPIDs lists the redo processes of the pool whose scratch directory is
// dir: `postgres --single -D <dir>/proc-...`.
func redoPIDs(t *testing.T, dir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if slices.Contains(args, "--single") && slices.ContainsFunc(args, func(a string) bool {
			return strings.HasPrefix(a, filepath.Join(dir, "proc-"))
		}) && !isZombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func isZombie(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z'
}

// waitNoLeftovers waits a little for the scratch copies of stopped
// processes to be removed (after they exit), then checks.
func waitNoLeftovers(t *testing.T, dir string, pids map[int]bool) {
	t.Helper()
	for range 100 {
		entries, _ := os.ReadDir(dir)
		if !slices.ContainsFunc(entries, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), "proc-") }) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkNoLeftovers(t, dir, pids)
}

// checkNoLeftovers checks that no scratch copy is left in dir and no System V
// shared memory segment was left by the processes in pids.
func checkNoLeftovers(t *testing.T, dir string, pids map[int]bool) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "proc-") {
			t.Errorf("scratch copy %s left in %s", e.Name(), dir)
		}
	}
	// /proc/sysvipc/shm: key shmid perms size cpid lpid nattch ...
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		if cpid, _ := strconv.Atoi(f[4]); pids[cpid] {
			t.Errorf("shared memory segment %s of killed redo process %d left behind", f[1], cpid)
		}
	}
}
