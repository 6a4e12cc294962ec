package pageservice

// The pagestream messages of PS §6.2, as pure functions over bytes: the
// server decodes requests and encodes responses, the client the reverse.
// Every decoder takes untrusted bytes and returns an error, never panics.
// All integers are big-endian.

import (
	"encoding/binary"
	"errors"
	"fmt"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
)

// Version is the pagestream protocol version: 2 or 3 (the command
// pagestream_v2 or pagestream_v3). v3 adds a request id and echoes each
// request in its response.
type Version uint8

// Protocol versions.
const (
	V2 Version = 2
	V3 Version = 3
)

// Tag is a request's first byte.
type Tag uint8

// Request tags.
const (
	TagExists         Tag = 0
	TagNblocks        Tag = 1
	TagGetPage        Tag = 2
	TagDBSize         Tag = 3
	TagGetSlruSegment Tag = 4
)

func (t Tag) String() string {
	switch t {
	case TagExists:
		return "exists"
	case TagNblocks:
		return "nblocks"
	case TagGetPage:
		return "getpage"
	case TagDBSize:
		return "dbsize"
	case TagGetSlruSegment:
		return "get_slru_segment"
	}
	return fmt.Sprintf("tag %d", uint8(t))
}

// Response tags: the request's tag + 100, and 103 for an error.
const (
	RespExists         uint8 = 100
	RespNblocks        uint8 = 101
	RespGetPage        uint8 = 102
	RespError          uint8 = 103
	RespDBSize         uint8 = 104
	RespGetSlruSegment uint8 = 105
)

// ResponseTag is the tag of a successful answer to a request of tag t.
func ResponseTag(t Tag) uint8 {
	if t >= TagDBSize {
		return uint8(t) + 101 // 103 is the error
	}
	return uint8(t) + 100
}

// BlockSize is PostgreSQL's page size.
const BlockSize = 8192

const (
	relTagLen = 4 + 4 + 4 + 1
	maxSlru   = key.MultiXactOffsets
)

// ErrMalformed is wrapped by decoding errors.
var ErrMalformed = errors.New("malformed pagestream message")

// Header is what every request carries before its body.
type Header struct {
	ReqID            uint64 // v3 only
	RequestLSN       lsn.LSN
	NotModifiedSince lsn.LSN
}

func headerLen(v Version) int {
	if v == V3 {
		return 24
	}
	return 16
}

// Request is one decoded pagestream request; which body fields mean
// anything depends on Tag.
type Request struct {
	Tag Tag
	Header
	Rel      key.Rel      // Exists, Nblocks, GetPage
	Block    uint32       // GetPage
	DB       uint32       // DbSize (tablespace DefaultTablespace)
	SlruKind key.SlruKind // GetSlruSegment
	Segno    uint32       // GetSlruSegment
}

func bodyLen(t Tag) (int, bool) {
	switch t {
	case TagExists, TagNblocks:
		return relTagLen, true
	case TagGetPage:
		return relTagLen + 4, true
	case TagDBSize:
		return 4, true
	case TagGetSlruSegment:
		return 1 + 4, true
	}
	return 0, false
}

// DecodeRequest decodes one request (the payload of one CopyData). The
// message must be exactly as long as its tag says.
func DecodeRequest(v Version, b []byte) (Request, error) {
	var r Request
	if err := checkMessage(v, b, "request"); err != nil {
		return r, err
	}
	r.Tag = Tag(b[0])
	n, ok := bodyLen(r.Tag)
	if !ok {
		return r, fmt.Errorf("unknown request tag %d: %w", b[0], ErrMalformed)
	}
	hl := headerLen(v)
	if want := 1 + hl + n; len(b) != want {
		return r, fmt.Errorf("%s request of %d bytes, want %d: %w", r.Tag, len(b), want, ErrMalformed)
	}
	rest := decodeHeader(v, b[1:], &r.Header)
	decodeBody(r.Tag, rest, &r)
	if r.Tag == TagGetSlruSegment && r.SlruKind > maxSlru {
		return r, fmt.Errorf("unknown SLRU kind %d: %w", r.SlruKind, ErrMalformed)
	}
	return r, nil
}

// checkMessage refuses what neither decoder can start on: an unknown
// version or an empty message (what is "request" or "response").
func checkMessage(v Version, b []byte, what string) error {
	if v != V2 && v != V3 {
		return fmt.Errorf("pagestream version %d: %w", v, ErrMalformed)
	}
	if len(b) == 0 {
		return fmt.Errorf("empty %s: %w", what, ErrMalformed)
	}
	return nil
}

// decodeHeader reads a header of the right length from b and returns the
// rest.
func decodeHeader(v Version, b []byte, h *Header) []byte {
	be := binary.BigEndian
	if v == V3 {
		h.ReqID = be.Uint64(b)
		b = b[8:]
	}
	h.RequestLSN = lsn.LSN(be.Uint64(b))
	h.NotModifiedSince = lsn.LSN(be.Uint64(b[8:]))
	return b[16:]
}

// decodeBody reads the body of tag t from b, which is long enough.
func decodeBody(t Tag, b []byte, r *Request) {
	be := binary.BigEndian
	switch t {
	case TagExists, TagNblocks, TagGetPage:
		r.Rel = key.Rel{Spc: be.Uint32(b), DB: be.Uint32(b[4:]), Rel: be.Uint32(b[8:]), Fork: b[12]}
		if t == TagGetPage {
			r.Block = be.Uint32(b[13:])
		}
	case TagDBSize:
		r.DB = be.Uint32(b)
	case TagGetSlruSegment:
		r.SlruKind = key.SlruKind(b[0])
		r.Segno = be.Uint32(b[1:])
	}
}

// AppendRequest encodes r for protocol v.
func AppendRequest(dst []byte, v Version, r Request) []byte {
	dst = append(dst, byte(r.Tag))
	dst = appendEcho(dst, v, r)
	return dst
}

// appendEcho appends the request after its tag: header and body. A v3
// response starts with this echo.
func appendEcho(dst []byte, v Version, r Request) []byte {
	return appendBody(appendHeader(dst, v, r.Header), r)
}

func appendHeader(dst []byte, v Version, h Header) []byte {
	be := binary.BigEndian
	if v == V3 {
		dst = be.AppendUint64(dst, h.ReqID)
	}
	dst = be.AppendUint64(dst, uint64(h.RequestLSN))
	return be.AppendUint64(dst, uint64(h.NotModifiedSince))
}

func appendBody(dst []byte, r Request) []byte {
	be := binary.BigEndian
	switch r.Tag {
	case TagExists, TagNblocks, TagGetPage:
		dst = be.AppendUint32(dst, r.Rel.Spc)
		dst = be.AppendUint32(dst, r.Rel.DB)
		dst = be.AppendUint32(dst, r.Rel.Rel)
		dst = append(dst, r.Rel.Fork)
		if r.Tag == TagGetPage {
			dst = be.AppendUint32(dst, r.Block)
		}
	case TagDBSize:
		dst = be.AppendUint32(dst, r.DB)
	case TagGetSlruSegment:
		dst = append(dst, byte(r.SlruKind))
		dst = be.AppendUint32(dst, r.Segno)
	}
	return dst
}

// appendResponseStart appends a response's tag and, for v3, the echo of
// the request it answers.
func appendResponseStart(dst []byte, v Version, tag uint8, r Request) []byte {
	dst = append(dst, tag)
	if v == V3 {
		dst = appendEcho(dst, v, r)
	}
	return dst
}

// The Append* functions below encode the answer to r. The server builds
// an SLRU segment answer in place (appendResponseStart, then the pages) so
// that a segment's pages are copied once.

// AppendExists encodes the answer to an Exists request.
func AppendExists(dst []byte, v Version, r Request, exists bool) []byte {
	dst = appendResponseStart(dst, v, RespExists, r)
	if exists {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// AppendNblocks encodes the answer to an Nblocks request.
func AppendNblocks(dst []byte, v Version, r Request, n uint32) []byte {
	return binary.BigEndian.AppendUint32(appendResponseStart(dst, v, RespNblocks, r), n)
}

// AppendDBSize encodes the answer to a DbSize request.
func AppendDBSize(dst []byte, v Version, r Request, bytes int64) []byte {
	return binary.BigEndian.AppendUint64(appendResponseStart(dst, v, RespDBSize, r), uint64(bytes))
}

// AppendGetPage encodes the answer to a GetPage request.
func AppendGetPage(dst []byte, v Version, r Request, page []byte) []byte {
	return append(appendResponseStart(dst, v, RespGetPage, r), page...)
}

// AppendSlruSegment encodes the answer to a GetSlruSegment request; seg is
// a whole number of pages.
func AppendSlruSegment(dst []byte, v Version, r Request, seg []byte) []byte {
	dst = appendResponseStart(dst, v, RespGetSlruSegment, r)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(seg)/BlockSize))
	return append(dst, seg...)
}

// AppendErrorResponse encodes an error answer: v3 echoes only the header.
func AppendErrorResponse(dst []byte, v Version, r Request, msg string) []byte {
	dst = append(dst, RespError)
	if v == V3 {
		dst = appendHeader(dst, v, r.Header)
	}
	dst = append(dst, msg...)
	return append(dst, 0)
}

// Response is one decoded pagestream response.
type Response struct {
	Tag uint8
	// Request is the echo of the request (v3; for an error only its
	// Header, with Tag zero).
	Request Request
	Exists  bool
	NBlocks uint32 // Nblocks, and the page count of an SLRU segment
	Page    []byte // GetPage: aliases the decoded buffer
	DBSize  int64
	Segment []byte // GetSlruSegment: aliases the decoded buffer
	Error   string // RespError
}

// DecodeResponse decodes one response (the payload of one CopyData).
func DecodeResponse(v Version, b []byte) (Response, error) {
	var r Response
	if err := checkMessage(v, b, "response"); err != nil {
		return r, err
	}
	r.Tag = b[0]
	b = b[1:]
	if v == V3 {
		var n int
		switch r.Tag {
		case RespError:
		case RespExists, RespNblocks, RespGetPage:
			r.Request.Tag = Tag(r.Tag - 100)
		case RespDBSize, RespGetSlruSegment:
			r.Request.Tag = Tag(r.Tag - 101) // 103 is the error
		default:
			return r, fmt.Errorf("unknown response tag %d: %w", r.Tag, ErrMalformed)
		}
		if r.Tag != RespError {
			n, _ = bodyLen(r.Request.Tag)
		}
		hl := headerLen(v)
		if len(b) < hl+n {
			return r, fmt.Errorf("response tag %d of %d bytes: echo cut short: %w", r.Tag, len(b)+1, ErrMalformed)
		}
		rest := decodeHeader(v, b, &r.Request.Header)
		if r.Tag != RespError {
			decodeBody(r.Request.Tag, rest, &r.Request)
		}
		b = b[hl+n:]
	}
	be := binary.BigEndian
	short := func(want int) error {
		return fmt.Errorf("response tag %d: %d bytes after the echo, want %d: %w", r.Tag, len(b), want, ErrMalformed)
	}
	switch r.Tag {
	case RespExists:
		if len(b) != 1 {
			return r, short(1)
		}
		r.Exists = b[0] != 0
	case RespNblocks:
		if len(b) != 4 {
			return r, short(4)
		}
		r.NBlocks = be.Uint32(b)
	case RespGetPage:
		if len(b) != BlockSize {
			return r, short(BlockSize)
		}
		r.Page = b
	case RespDBSize:
		if len(b) != 8 {
			return r, short(8)
		}
		r.DBSize = int64(be.Uint64(b))
	case RespGetSlruSegment:
		if len(b) < 4 {
			return r, short(4)
		}
		r.NBlocks = be.Uint32(b)
		if uint64(len(b)-4) != uint64(r.NBlocks)*BlockSize {
			return r, short(4 + int(min(r.NBlocks, 1<<20))*BlockSize)
		}
		r.Segment = b[4:]
	case RespError:
		if len(b) == 0 || b[len(b)-1] != 0 {
			return r, fmt.Errorf("error response without a terminating NUL: %w", ErrMalformed)
		}
		r.Error = string(b[:len(b)-1])
	default:
		return r, fmt.Errorf("unknown response tag %d: %w", r.Tag, ErrMalformed)
	}
	return r, nil
}
