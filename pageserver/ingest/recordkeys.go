package ingest

import "strata.dev/pageserver/key"

// recordKeys maps each key the record being ingested wrote to its index in
// the batch's entries. A record writes a handful of keys: scanning a short
// list finds them faster than a map lookup, and starting the next record
// costs nothing, where clearing a map costs its capacity, which only grows
// (that clear was 6% of ingest's CPU on pgbench WAL). A record that writes
// many keys (a database copy, a relation's truncation) moves to a map past
// linearKeys.
type recordKeys struct {
	list []keyIndex
	big  map[key.Key]int
}

type keyIndex struct {
	k key.Key
	i int
}

// linearKeys is the most keys kept in the list.
const linearKeys = 32

func (r *recordKeys) reset() {
	r.list = r.list[:0]
	r.big = nil
}

func (r *recordKeys) get(k key.Key) (int, bool) {
	if r.big != nil {
		i, ok := r.big[k]
		return i, ok
	}
	for _, e := range r.list {
		if e.k == k {
			return e.i, true
		}
	}
	return 0, false
}

// add records k at index i; k must not be there yet.
func (r *recordKeys) add(k key.Key, i int) {
	switch {
	case r.big != nil:
		r.big[k] = i
	case len(r.list) < linearKeys:
		r.list = append(r.list, keyIndex{k, i})
	default:
		r.big = make(map[key.Key]int, 2*linearKeys)
		for _, e := range r.list {
			r.big[e.k] = e.i
		}
		r.big[k] = i
	}
}
