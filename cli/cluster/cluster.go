// Package cluster is the strata CLI's description of one cluster: where its
// daemons listen, its tenant, the names of its timelines and its computes.
// It lives in <dir>/strata.toml. `strata local up` writes it for a local
// cluster; for a cluster spread over hosts an operator writes it by hand
// (deploy/README.md), and every command that talks to the daemons reads it.
package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/BurntSushi/toml"

	"strata.dev/libs/durable"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
)

// FileName is the cluster file inside the cluster directory.
const FileName = "strata.toml"

// Daemon is where one safekeeper or the pageserver listens.
type Daemon struct {
	ID         uint64 `toml:"id"`
	ListenPG   string `toml:"listen_pg"`
	ListenGRPC string `toml:"listen_grpc"`
	ListenHTTP string `toml:"listen_http"`
}

// Compute is a PostgreSQL instance the CLI started on a timeline.
type Compute struct {
	// Timeline is the timeline's name.
	Timeline string `toml:"timeline"`
	// LSN is set for a static, read-only compute ("X/Y"); empty: read-write
	// at the end of the timeline, with a walproposer.
	LSN     string `toml:"lsn,omitempty"`
	Port    int    `toml:"port"`
	Datadir string `toml:"datadir"`
	// Options are postgresql.conf settings (name = value) given with
	// --pg-option.
	Options map[string]string `toml:"options,omitempty"`
	// WalproposerHTTP is the /metrics address of a read-write compute's
	// walproposer.
	WalproposerHTTP string `toml:"walproposer_http,omitempty"`
}

// ReadOnly reports whether the compute is a static one at a fixed LSN.
func (c Compute) ReadOnly() bool { return c.LSN != "" }

// Local is set for a cluster whose processes `strata local` runs on this
// machine.
type Local struct {
	// ServerDir holds what the pageserver and PostgreSQL write (their data
	// directories). It is the cluster directory unless that is out of the
	// server user's reach (the CLI runs as root, PostgreSQL must not).
	ServerDir string `toml:"server_dir"`
}

// File is the content of strata.toml.
type File struct {
	TenantID    string   `toml:"tenant_id"`
	PgBinDir    string   `toml:"pg_bin_dir,omitempty"`
	Pageserver  Daemon   `toml:"pageserver"`
	Safekeepers []Daemon `toml:"safekeepers"`
	// Timelines maps names to timeline ids.
	Timelines map[string]string `toml:"timelines"`
	// Computes maps compute names to computes.
	Computes map[string]Compute `toml:"computes,omitempty"`
	// Local is set by `strata local up`.
	Local *Local `toml:"local,omitempty"`
}

// ErrNoCluster is returned by Load when dir has no cluster file.
var ErrNoCluster = errors.New("no cluster here")

// Load reads dir's cluster file.
func Load(dir string) (*File, error) {
	path := filepath.Join(dir, FileName)
	var f File
	md, err := toml.DecodeFile(path, &f)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist (start one with `strata local up --dir %s`, or write it: see deploy/README.md)", ErrNoCluster, path, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return nil, fmt.Errorf("read %s: unknown setting %q", path, un[0].String())
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Timelines == nil {
		f.Timelines = map[string]string{}
	}
	if f.Computes == nil {
		f.Computes = map[string]Compute{}
	}
	return &f, nil
}

// Save writes the cluster file into dir durably (write, fsync, rename).
func (f *File) Save(dir string) error {
	var buf bytes.Buffer
	buf.WriteString("# The strata CLI's description of this cluster (see `strata --help`).\n")
	if err := toml.NewEncoder(&buf).Encode(f); err != nil {
		return fmt.Errorf("encode %s: %w", FileName, err)
	}
	if err := durable.WriteFile(filepath.Join(dir, FileName), buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", FileName, err)
	}
	return nil
}

// Validate checks the ids and that the daemons have addresses.
func (f *File) Validate() error {
	if _, err := id.Parse(f.TenantID); err != nil {
		return fmt.Errorf("tenant_id: %w", err)
	}
	if f.Pageserver.ListenGRPC == "" || f.Pageserver.ListenPG == "" {
		return errors.New("pageserver: listen_grpc and listen_pg are required")
	}
	if len(f.Safekeepers) == 0 {
		return errors.New("no safekeepers")
	}
	for i, sk := range f.Safekeepers {
		if sk.ListenGRPC == "" || sk.ListenPG == "" {
			return fmt.Errorf("safekeepers[%d]: listen_grpc and listen_pg are required", i)
		}
	}
	for name, tl := range f.Timelines {
		if _, err := id.Parse(tl); err != nil {
			return fmt.Errorf("timeline %q: %w", name, err)
		}
	}
	for name, c := range f.Computes {
		if err := ValidateComputeName(name); err != nil {
			return fmt.Errorf("compute %q: %w", name, err)
		}
		if c.Timeline == "" {
			return fmt.Errorf("compute %q: no timeline", name)
		}
		if c.Port <= 0 || c.Port > 65535 {
			return fmt.Errorf("compute %q: port %d out of range", name, c.Port)
		}
		if c.LSN != "" {
			if _, err := lsn.Parse(c.LSN); err != nil {
				return fmt.Errorf("compute %q: lsn %q: %w", name, c.LSN, err)
			}
		}
	}
	return nil
}

// ValidateComputeName checks a compute name: letters, digits, '-' and
// '_' (names become file names), at most 63 characters.
func ValidateComputeName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("name %q: want 1 to 63 characters", name)
	}
	for _, r := range name {
		ok := r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("name %q: only letters, digits, '-' and '_' are allowed", name)
		}
	}
	return nil
}

// Tenant is the parsed tenant id (Validate checked it).
func (f *File) Tenant() id.TenantID {
	t, _ := id.Parse(f.TenantID)
	return t
}

// Timeline resolves a timeline name, or a 32-hex-digit timeline id, to an id.
func (f *File) Timeline(nameOrID string) (id.TimelineID, error) {
	if s, ok := f.Timelines[nameOrID]; ok {
		return id.Parse(s)
	}
	if t, err := id.Parse(nameOrID); err == nil {
		return t, nil
	}
	return id.TimelineID{}, fmt.Errorf("no timeline named %q (known: %v)", nameOrID, f.TimelineNames())
}

// TimelineName is the name of the timeline with id tl, or "" if it has none.
func (f *File) TimelineName(tl id.TimelineID) string {
	for name, s := range f.Timelines {
		if s == tl.String() {
			return name
		}
	}
	return ""
}

// TimelineNames returns the known names, sorted.
func (f *File) TimelineNames() []string {
	names := make([]string, 0, len(f.Timelines))
	for n := range f.Timelines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SafekeeperPGAddrs are the safekeepers' libpq addresses, in order.
func (f *File) SafekeeperPGAddrs() []string {
	out := make([]string, len(f.Safekeepers))
	for i, sk := range f.Safekeepers {
		out[i] = sk.ListenPG
	}
	return out
}
