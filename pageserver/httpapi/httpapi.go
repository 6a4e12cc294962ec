// Package httpapi is the pageserver's HTTP management API: the subset of
// Neon's routes (PS §9.1) that creating, importing and watching timelines
// needs, with the same paths, JSON fields and status codes, so Neon's
// tooling habits carry over. LSNs are "X/Y" strings, ids 32 hex
// characters; errors are {"msg": "..."}.
//
//	GET  /v1/status
//	GET  /v1/tenant/{tenant}/timeline
//	POST /v1/tenant/{tenant}/timeline                       bootstrap or branch
//	GET  /v1/tenant/{tenant}/timeline/{timeline}
//	PUT  /v1/tenant/{tenant}/timeline/{timeline}/import_basebackup?base_lsn=&end_lsn=&pg_version=15
//	PUT  /v1/tenant/{tenant}/timeline/{timeline}/import_wal?start_lsn=&end_lsn=
//	PUT  /v1/tenant/{tenant}/timeline/{timeline}/checkpoint  freeze, flush, compact
//	GET  /v1/tenant/{tenant}/timeline/{timeline}/layer
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/tenant"
)

// API serves the management routes.
type API struct {
	Manager *tenant.Manager
	NodeID  uint64
	// WaitLSNTimeout bounds waiting for an ancestor to reach a branch point.
	WaitLSNTimeout time.Duration
	Log            zerolog.Logger
}

// Register adds the routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/status", a.status)
	mux.HandleFunc("GET /v1/tenant/{tenant}/timeline", a.listTimelines)
	mux.HandleFunc("POST /v1/tenant/{tenant}/timeline", a.createTimeline)
	mux.HandleFunc("GET /v1/tenant/{tenant}/timeline/{timeline}", a.getTimeline)
	mux.HandleFunc("PUT /v1/tenant/{tenant}/timeline/{timeline}/import_basebackup", a.importBasebackup)
	mux.HandleFunc("PUT /v1/tenant/{tenant}/timeline/{timeline}/import_wal", a.importWAL)
	mux.HandleFunc("PUT /v1/tenant/{tenant}/timeline/{timeline}/checkpoint", a.checkpoint)
	mux.HandleFunc("GET /v1/tenant/{tenant}/timeline/{timeline}/layer", a.layers)
}

func (a *API) status(w http.ResponseWriter, _ *http.Request) {
	reply(w, http.StatusOK, map[string]any{"id": a.NodeID})
}

func (a *API) listTimelines(w http.ResponseWriter, r *http.Request) {
	tenantID, ok := pathID(w, r, "tenant")
	if !ok {
		return
	}
	out := []TimelineInfo{}
	for _, t := range a.Manager.List(tenantID) {
		out = append(out, info(t))
	}
	reply(w, http.StatusOK, out)
}

// createRequest is Neon's timeline creation body: with an ancestor it is a
// branch, without one a bootstrap from initdb.
type createRequest struct {
	NewTimelineID      string  `json:"new_timeline_id"`
	AncestorTimelineID string  `json:"ancestor_timeline_id"`
	AncestorStartLSN   lsn.LSN `json:"ancestor_start_lsn"`
	PgVersion          int     `json:"pg_version"`
}

func (a *API) createTimeline(w http.ResponseWriter, r *http.Request) {
	tenantID, ok := pathID(w, r, "tenant")
	if !ok {
		return
	}
	var req createRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return
	}
	tl, err := id.Parse(req.NewTimelineID)
	if err != nil {
		fail(w, http.StatusBadRequest, fmt.Errorf("new_timeline_id: %w", err))
		return
	}
	if req.PgVersion != 0 && req.PgVersion != 15 {
		fail(w, http.StatusBadRequest, fmt.Errorf("pg_version %d: only PostgreSQL 15 is supported", req.PgVersion))
		return
	}
	ttid := id.TenantTimeline{Tenant: tenantID, Timeline: tl}
	var t *tenant.Timeline
	if req.AncestorTimelineID == "" {
		if req.AncestorStartLSN != 0 {
			fail(w, http.StatusBadRequest, errors.New("ancestor_start_lsn without ancestor_timeline_id"))
			return
		}
		t, err = a.Manager.Bootstrap(r.Context(), ttid)
	} else {
		anc, perr := id.Parse(req.AncestorTimelineID)
		if perr != nil {
			fail(w, http.StatusBadRequest, fmt.Errorf("ancestor_timeline_id: %w", perr))
			return
		}
		t, err = a.Manager.Branch(r.Context(), ttid, anc, req.AncestorStartLSN, a.WaitLSNTimeout)
	}
	if err != nil {
		a.managerError(w, r, err)
		return
	}
	reply(w, http.StatusCreated, info(t))
}

// pathID parses the id in the path segment name, or replies why not.
func pathID(w http.ResponseWriter, r *http.Request, name string) (id.ID, bool) {
	v, err := id.Parse(r.PathValue(name))
	if err != nil {
		fail(w, http.StatusBadRequest, fmt.Errorf("%s id: %w", name, err))
		return id.ID{}, false
	}
	return v, true
}

// timeline parses the tenant and timeline ids of the path, or replies why not.
func (a *API) timeline(w http.ResponseWriter, r *http.Request) (id.TenantTimeline, bool) {
	tenantID, ok := pathID(w, r, "tenant")
	if !ok {
		return id.TenantTimeline{}, false
	}
	tl, ok := pathID(w, r, "timeline")
	return id.TenantTimeline{Tenant: tenantID, Timeline: tl}, ok
}

// active finds the active timeline the path names, or replies with why not.
func (a *API) active(w http.ResponseWriter, r *http.Request) (*tenant.Timeline, bool) {
	ttid, ok := a.timeline(w, r)
	if !ok {
		return nil, false
	}
	t, err := a.Manager.Get(ttid)
	if err != nil {
		a.managerError(w, r, err)
		return nil, false
	}
	return t, true
}

func (a *API) getTimeline(w http.ResponseWriter, r *http.Request) {
	if t, ok := a.active(w, r); ok {
		reply(w, http.StatusOK, info(t))
	}
}

// queryLSNs parses the named query parameters as LSNs; a missing one is
// lsn.Invalid.
func queryLSNs(r *http.Request, names ...string) ([]lsn.LSN, error) {
	out := make([]lsn.LSN, len(names))
	for i, name := range names {
		s := r.URL.Query().Get(name)
		if s == "" {
			continue
		}
		l, err := lsn.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[i] = l
	}
	return out, nil
}

func (a *API) importBasebackup(w http.ResponseWriter, r *http.Request) {
	ttid, ok := a.timeline(w, r)
	if !ok {
		return
	}
	lsns, err := queryLSNs(r, "base_lsn", "end_lsn")
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	if v := r.URL.Query().Get("pg_version"); v != "" && v != "15" {
		fail(w, http.StatusBadRequest, fmt.Errorf("pg_version %s: only PostgreSQL 15 is supported", v))
		return
	}
	res, err := a.Manager.ImportBasebackup(r.Context(), ttid, r.Body, lsns[0], lsns[1])
	if err != nil {
		a.managerError(w, r, err)
		return
	}
	reply(w, http.StatusOK, importReply(res))
}

func (a *API) importWAL(w http.ResponseWriter, r *http.Request) {
	ttid, ok := a.timeline(w, r)
	if !ok {
		return
	}
	lsns, err := queryLSNs(r, "start_lsn", "end_lsn")
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	res, err := a.Manager.ImportWAL(r.Context(), ttid, r.Body, lsns[0], lsns[1])
	if err != nil {
		a.managerError(w, r, err)
		return
	}
	reply(w, http.StatusOK, importReply(res))
}

func importReply(res tenant.ImportResult) map[string]any {
	return map[string]any{"base_lsn": res.BaseLSN, "last_record_lsn": res.LastRecordLSN, "done": res.Done}
}

// checkpoint freezes the open layer, writes everything to layer files and
// compacts (Neon's defaults: wait_until_flushed, compact).
func (a *API) checkpoint(w http.ResponseWriter, r *http.Request) {
	t, ok := a.active(w, r)
	if !ok {
		return
	}
	if err := t.Checkpoint(r.Context(), r.URL.Query().Get("compact") != "false"); err != nil {
		fail(w, http.StatusInternalServerError, err)
		return
	}
	reply(w, http.StatusOK, info(t))
}

// LayerInfo is one entry of the layer listing.
type LayerInfo struct {
	Name     string  `json:"layer_file_name"`
	Kind     string  `json:"kind"` // "Delta" or "Image"
	InMemory bool    `json:"in_memory"`
	LSNStart lsn.LSN `json:"lsn_start"`
	LSNEnd   lsn.LSN `json:"lsn_end"`
	Size     int64   `json:"layer_file_size"`
}

func (a *API) layers(w http.ResponseWriter, r *http.Request) {
	t, ok := a.active(w, r)
	if !ok {
		return
	}
	out := []LayerInfo{}
	for _, l := range t.Layers() {
		kind := "Delta"
		if l.Kind == layer.KindImage {
			kind = "Image"
		}
		out = append(out, LayerInfo{Name: l.Name, Kind: kind, InMemory: l.InMemory,
			LSNStart: l.LSNs.Start, LSNEnd: l.LSNs.End, Size: l.Size})
	}
	reply(w, http.StatusOK, map[string]any{"layers": out})
}

// managerError maps the manager's errors to Neon's status codes.
func (a *API) managerError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, tenant.ErrExists):
		code = http.StatusConflict
	case errors.Is(err, tenant.ErrInvalid):
		code = http.StatusNotAcceptable
		if r.Method == http.MethodPut {
			code = http.StatusBadRequest
		}
	case errors.Is(err, tenant.ErrShuttingDown), errors.Is(err, context.Canceled):
		code = http.StatusServiceUnavailable
	}
	if code >= 500 {
		a.Log.Error().Err(err).Str("path", r.URL.Path).Msg("management request failed")
	}
	fail(w, code, err)
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, err error) {
	reply(w, code, map[string]string{"msg": err.Error()})
}
