package ingesttest

import "encoding/binary"

// LE builds little-endian record payloads, the way PostgreSQL lays out its
// WAL structs: each argument is appended in its own width (uint8, uint16,
// uint32, int32, uint64, int64, []byte, string).
func LE(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case uint8:
			b = append(b, v)
		case uint16:
			b = binary.LittleEndian.AppendUint16(b, v)
		case uint32:
			b = binary.LittleEndian.AppendUint32(b, v)
		case int32:
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		case uint64:
			b = binary.LittleEndian.AppendUint64(b, v)
		case int64:
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		case []byte:
			b = append(b, v...)
		case string:
			b = append(b, v...)
		default:
			panic("LE: unsupported type")
		}
	}
	return b
}
