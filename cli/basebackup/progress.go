package basebackup

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// Progress reports a download on stderr: on a terminal a bar redrawn in
// place (bytes / estimated size, rate), otherwise a line every few seconds,
// so that logs of a long basebackup show it moving without filling up.
type Progress struct {
	w        io.Writer
	terminal bool
	width    int
	every    time.Duration
	now      func() time.Time

	start, last time.Time
	estimate    int64
	drawn       bool
}

// NewProgress reports to w; terminal says whether w is one, width is its
// width in columns (0: 80).
func NewProgress(w io.Writer, terminal bool, width int) *Progress {
	p := &Progress{w: w, terminal: terminal, width: width, every: 5 * time.Second, now: time.Now}
	if terminal {
		p.every = 200 * time.Millisecond
	}
	if p.width <= 0 {
		p.width = 80
	}
	return p
}

// Start begins the report; estimate is the expected size (0: unknown).
func (p *Progress) Start(estimate int64) {
	p.start, p.estimate = p.now(), estimate
	p.last = p.start
}

// Update reports bytes received so far, drawing if it is time to.
func (p *Progress) Update(bytes int64) {
	now := p.now()
	if now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	elapsed := now.Sub(p.start)
	if p.terminal {
		fmt.Fprintf(p.w, "\r%s\x1b[K", barLine(bytes, p.estimate, elapsed, p.width))
		p.drawn = true
		return
	}
	fmt.Fprintf(p.w, "basebackup: %s\n", textLine(bytes, p.estimate, elapsed))
}

// Finish ends a bar with its final state (lines need no ending).
func (p *Progress) Finish(bytes int64) {
	if p.terminal && p.drawn {
		fmt.Fprintf(p.w, "\r%s\x1b[K\n", barLine(bytes, bytes, p.now().Sub(p.start), p.width))
	}
}

// Abort ends a bar where it stopped, so that an error prints on its own
// line.
func (p *Progress) Abort() {
	if p.terminal && p.drawn {
		fmt.Fprintln(p.w)
	}
}

// barLine is "[=====>    ]  12.3 MiB / ~40.0 MiB  30%  5.1 MiB/s", at
// most width columns (the bar shrinks, to 10 at least).
func barLine(done, estimate int64, elapsed time.Duration, width int) string {
	text := "  " + textLine(done, estimate, elapsed)
	if estimate <= 0 {
		return strings.TrimLeft(text, " ")
	}
	n := min(width-len(text)-3, 40) // 2 brackets, 1 column spare so the line never wraps
	if n < 10 {
		return strings.TrimLeft(text, " ")
	}
	filled := int(int64(n) * min(done, estimate) / estimate)
	bar := strings.Repeat("=", filled)
	if filled < n {
		bar += ">" + strings.Repeat(" ", n-filled-1)
	}
	return "[" + bar + "]" + text
}

// textLine is "12.3 MiB of ~40.0 MiB (30%), 5.1 MiB/s" (without an
// estimate: "12.3 MiB, 5.1 MiB/s"). The percentage stays below 100 until
// done: the estimate may be low.
func textLine(done, estimate int64, elapsed time.Duration) string {
	rate := "-"
	if elapsed > 0 {
		rate = humanize.IBytes(uint64(float64(done)/elapsed.Seconds())) + "/s"
	}
	if estimate <= 0 {
		return fmt.Sprintf("%s, %s", humanize.IBytes(uint64(done)), rate)
	}
	pct := done * 100 / estimate
	if done < estimate {
		pct = min(pct, 99)
	} else {
		pct = 100
	}
	return fmt.Sprintf("%s of ~%s (%d%%), %s", humanize.IBytes(uint64(done)), humanize.IBytes(uint64(estimate)), pct, rate)
}
