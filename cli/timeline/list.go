// Package timeline is `strata timeline`: the cluster's timelines by name,
// as the pageserver holds them (list), new root timelines bootstrapped from
// initdb on the pageserver (create), and branches off a timeline at an LSN
// or at a time resolved from commit records (branch). Names live in
// strata.toml; the pageserver knows only ids.
package timeline

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"text/tabwriter"

	"strata.dev/cli/client"
	"strata.dev/libs/lsn"
)

// Listing is what `strata timeline list` prints. The JSON field names are
// stable (ListJSONHelp documents them).
type Listing struct {
	TenantID  string `json:"tenant_id"`
	Timelines []Info `json:"timelines"`
	// Warnings are what could not be read (a safekeeper down) or does not
	// match (a name whose timeline the pageserver lacks).
	Warnings []string `json:"warnings,omitempty"`
}

// Info is one timeline of a Listing.
type Info struct {
	// Name is the name in strata.toml, or "" for an unnamed timeline.
	Name              string    `json:"name"`
	ID                string    `json:"id"`
	Ancestor          *Ancestor `json:"ancestor"`
	LastRecordLSN     lsn.LSN   `json:"last_record_lsn"`
	DiskConsistentLSN lsn.LSN   `json:"disk_consistent_lsn"`
	State             string    `json:"state"`
	StateError        string    `json:"state_error,omitempty"`
	// SafekeeperCommitLSN is the highest commit LSN of the safekeepers
	// that have the timeline; null when none has it (or none answered).
	SafekeeperCommitLSN *lsn.LSN `json:"safekeeper_commit_lsn"`
}

// Ancestor is where a branch starts.
type Ancestor struct {
	Name string  `json:"name"` // "" if unnamed
	ID   string  `json:"id"`
	LSN  lsn.LSN `json:"lsn"`
}

// ListJSONHelp documents `strata timeline list -o json`.
const ListJSONHelp = `JSON (-o json): {"tenant_id", "timelines": [{"name" ("" if unnamed), "id",
  "ancestor": null or {"name", "id", "lsn"}, "last_record_lsn", "disk_consistent_lsn",
  "state", "state_error" (if any), "safekeeper_commit_lsn" (null if no safekeeper has it)}],
  "warnings": [...] (if any)}. LSNs are "X/Y" strings.`

// List reads every timeline of the cluster's tenant from the pageserver
// and the safekeepers' commit LSNs. Only the pageserver must answer; a
// safekeeper that does not becomes a warning.
func List(ctx context.Context, c *client.Cluster) (*Listing, error) {
	tenant := c.Tenant().String()
	var (
		wg       sync.WaitGroup
		commits  = make([]map[string]lsn.LSN, len(c.Safekeepers))
		skErrors = make([]error, len(c.Safekeepers))
	)
	for i, sk := range c.Safekeepers {
		wg.Go(func() { commits[i], skErrors[i] = safekeeperCommits(ctx, c, sk) })
	}
	timelines, err := c.PageserverTimelines(ctx)
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("list timelines: %w", err)
	}

	l := &Listing{TenantID: tenant, Timelines: []Info{}}
	for _, err := range skErrors {
		if err != nil {
			l.Warnings = append(l.Warnings, err.Error())
		}
	}
	onPageserver := map[string]bool{}
	for _, ti := range timelines {
		onPageserver[ti.TimelineId] = true
		info := Info{
			Name: c.NameOf(ti.TimelineId), ID: ti.TimelineId,
			LastRecordLSN: lsn.LSN(ti.LastRecordLsn), DiskConsistentLSN: lsn.LSN(ti.DiskConsistentLsn),
			State: ti.State, StateError: ti.StateError,
		}
		if ti.AncestorTimelineId != "" {
			info.Ancestor = &Ancestor{Name: c.NameOf(ti.AncestorTimelineId), ID: ti.AncestorTimelineId, LSN: lsn.LSN(ti.AncestorLsn)}
		}
		for _, m := range commits {
			if v, ok := m[ti.TimelineId]; ok && (info.SafekeeperCommitLSN == nil || v > *info.SafekeeperCommitLSN) {
				info.SafekeeperCommitLSN = &v
			}
		}
		l.Timelines = append(l.Timelines, info)
	}
	sortInfos(l.Timelines)
	for _, name := range c.File.TimelineNames() {
		if tl := c.File.Timelines[name]; !onPageserver[tl] {
			l.Warnings = append(l.Warnings, fmt.Sprintf("timeline %q (%s) is in %s but not on the pageserver", name, tl, "strata.toml"))
		}
	}
	return l, nil
}

// safekeeperCommits maps the tenant's timeline ids to sk's commit LSNs.
func safekeeperCommits(ctx context.Context, c *client.Cluster, sk client.Safekeeper) (map[string]lsn.LSN, error) {
	timelines, err := c.SafekeeperTimelines(ctx, sk)
	if err != nil {
		return nil, fmt.Errorf("no commit LSNs from %w", err)
	}
	m := map[string]lsn.LSN{}
	for _, ti := range timelines {
		m[ti.TimelineId] = lsn.LSN(ti.CommitLsn)
	}
	return m, nil
}

// sortInfos puts the timelines in the CLI's order (client.TimelineLess).
func sortInfos(ts []Info) {
	sort.Slice(ts, func(i, j int) bool { return client.TimelineLess(ts[i].Name, ts[i].ID, ts[j].Name, ts[j].ID) })
}

// WriteTable writes l as an aligned table; warnings are not part of it.
func (l *Listing) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tANCESTOR\tLAST RECORD\tDISK CONSISTENT\tSAFEKEEPER COMMIT\tSTATE")
	for _, t := range l.Timelines {
		name, anc, commit := t.Name, "-", "-"
		if name == "" {
			name = t.ID
		}
		if t.Ancestor != nil {
			an := t.Ancestor.Name
			if an == "" {
				an = t.Ancestor.ID
			}
			anc = an + "@" + t.Ancestor.LSN.String()
		}
		if t.SafekeeperCommitLSN != nil {
			commit = t.SafekeeperCommitLSN.String()
		}
		state := t.State
		if t.StateError != "" {
			state += ": " + t.StateError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, t.ID, anc, t.LastRecordLSN, t.DiskConsistentLSN, commit, state)
	}
	return tw.Flush()
}
