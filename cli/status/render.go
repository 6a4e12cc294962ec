package status

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
)

// WriteTable writes the daemons, the errors of those that are not healthy,
// and the timelines, with one COMMIT/FLUSH column per safekeeper ("-": the
// safekeeper lacks the timeline, "?": it did not answer).
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DAEMON\tID\tGRPC\tPG\tHTTP\tHEALTH\tVERSION\tUPTIME")
	for _, d := range r.Daemons {
		health := "healthy"
		switch {
		case d.Down:
			health = "DOWN"
		case !d.Healthy:
			health = "UNHEALTHY"
		}
		uptime := "-"
		if d.StartedAt != nil {
			uptime = (time.Duration(d.UptimeSeconds) * time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Kind, d.ID, dash(d.ListenGRPC), dash(d.ListenPG), dash(d.ListenHTTP), health, dash(d.Version), uptime)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range r.Daemons {
		if d.Error != "" {
			fmt.Fprintf(w, "  %s\n", d.Error)
		}
	}

	fmt.Fprintf(w, "\ntenant %s\n", r.TenantID)
	if len(r.Timelines) == 0 {
		_, err := fmt.Fprintln(w, "no timelines (create one: strata timeline create main)")
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"TIMELINE", "ID", "STATE", "LAST RECORD", "DISK CONSISTENT"}
	var sks []Daemon
	for _, d := range r.Daemons {
		if d.Kind == "safekeeper" {
			sks = append(sks, d)
			head = append(head, fmt.Sprintf("SK%d COMMIT/FLUSH", d.ID))
		}
	}
	head = append(head, "WAL SOURCE", "LAG")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, t := range r.Timelines {
		name := t.Name
		if name == "" {
			name = "-"
		}
		row := []string{name, t.ID}
		if p := t.Pageserver; p != nil {
			state := p.State
			if p.StateError != "" {
				state += ": " + p.StateError
			}
			row = append(row, state, p.LastRecordLSN.String(), p.DiskConsistentLSN.String())
		} else {
			row = append(row, "not on pageserver", "-", "-")
		}
		for _, d := range sks {
			row = append(row, safekeeperCell(t, d))
		}
		if p := t.Pageserver; p != nil {
			src := dash(p.WALSource)
			if p.WALSourceID != 0 {
				src = fmt.Sprintf("sk%d %s", p.WALSourceID, p.WALSource)
			}
			if p.WALReceiverError != "" {
				src += " (error: " + p.WALReceiverError + ")"
			}
			row = append(row, src, humanize.IBytes(p.LagBytes))
		} else {
			row = append(row, "-", "-")
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func safekeeperCell(t Timeline, d Daemon) string {
	for _, s := range t.Safekeepers {
		if s.ID == d.ID {
			return s.CommitLSN.String() + " / " + s.FlushLSN.String()
		}
	}
	if d.Down {
		return "?"
	}
	return "-"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
