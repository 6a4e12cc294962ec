package cluster

import (
	"errors"
	"fmt"

	"strata.dev/libs/id"
)

// MaxNameLen bounds a timeline name: it appears in tables and file names.
const MaxNameLen = 63

// ErrNameTaken is returned (wrapped) by AddTimeline for a name in use.
var ErrNameTaken = errors.New("timeline name taken")

// ValidateTimelineName checks a new timeline name: 1 to 63 characters of
// [a-z0-9_-], and not 32 hex digits (Timeline would read it as an id).
func ValidateTimelineName(name string) error {
	if name == "" {
		return errors.New("timeline name is empty")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("timeline name %.20q... is %d characters long (at most %d)", name, len(name), MaxNameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("timeline name %q: %q is not allowed (use a-z, 0-9, _ and -)", name, r)
		}
	}
	if _, err := id.Parse(name); err == nil {
		return fmt.Errorf("timeline name %q looks like a timeline id (32 hex digits): pick another", name)
	}
	return nil
}

// AddTimeline records name for timeline tl: the name must be valid and not
// taken (ErrNameTaken), and tl must not have a name yet.
func (f *File) AddTimeline(name string, tl id.TimelineID) error {
	if err := ValidateTimelineName(name); err != nil {
		return err
	}
	if old, ok := f.Timelines[name]; ok {
		return fmt.Errorf("%w: %q is timeline %s", ErrNameTaken, name, old)
	}
	if other := f.TimelineName(tl); other != "" {
		return fmt.Errorf("timeline %s is already named %q", tl, other)
	}
	if f.Timelines == nil {
		f.Timelines = map[string]string{}
	}
	f.Timelines[name] = tl.String()
	return nil
}
