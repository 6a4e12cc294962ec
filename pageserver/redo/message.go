package redo

import (
	"encoding/binary"

	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgpage"
	"strata.dev/pageserver/value"
)

// The messages of the redo protocol (PS §4.2): a type byte, a big-endian
// u32 length that counts itself but not the type, the payload.
const (
	msgBegin = 'B' // tag: the target block
	msgPush  = 'P' // tag + page: the base image
	msgApply = 'A' // u64 end LSN + one XLogRecord
	msgGet   = 'G' // tag: answered with the 8192-byte page
	msgPing  = 'H' // answered with 8192 zero bytes

	tagLen = 17 // fork u8, spcnode, dbnode, relnode, blkno u32
)

// appendTag appends the BufferTag of a relation block key.
func appendTag(dst []byte, k key.Key) []byte {
	rel := k.Rel()
	dst = append(dst, rel.Fork)
	dst = binary.BigEndian.AppendUint32(dst, rel.Spc)
	dst = binary.BigEndian.AppendUint32(dst, rel.DB)
	dst = binary.BigEndian.AppendUint32(dst, rel.Rel)
	return binary.BigEndian.AppendUint32(dst, k.Block())
}

func appendHeader(dst []byte, typ byte, payload int) []byte {
	return binary.BigEndian.AppendUint32(append(dst, typ), uint32(4+payload))
}

// appendRequest appends one whole request: the page of k after records,
// applied to base (nil when the first record initialises the page).
func appendRequest(dst []byte, k key.Key, base []byte, records []value.Versioned) []byte {
	dst = appendTag(appendHeader(dst, msgBegin, tagLen), k)
	if base != nil {
		dst = appendTag(appendHeader(dst, msgPush, tagLen+pgpage.BlockSize), k)
		dst = append(dst, base...)
	}
	for _, rec := range records {
		dst = appendHeader(dst, msgApply, 8+len(rec.Record.Raw))
		dst = binary.BigEndian.AppendUint64(dst, uint64(rec.LSN))
		dst = append(dst, rec.Record.Raw...)
	}
	return appendTag(appendHeader(dst, msgGet, tagLen), k)
}

// requestSize is len(appendRequest(nil, ...)).
func requestSize(base []byte, records []value.Versioned) int {
	n := 2 * (5 + tagLen)
	if base != nil {
		n += 5 + tagLen + pgpage.BlockSize
	}
	for _, rec := range records {
		n += 5 + 8 + len(rec.Record.Raw)
	}
	return n
}

func appendPing(dst []byte) []byte { return appendHeader(dst, msgPing, 0) }
