// Package pgtime converts between Go times and PostgreSQL's wire timestamps:
// signed microseconds since 2000-01-01 00:00:00 UTC, as carried by replication
// messages (XLogData, keepalives, standby replies) and hot-standby feedback.
package pgtime

import "time"

// epochUnixMicros is 2000-01-01 00:00:00 UTC in microseconds since the Unix epoch.
const epochUnixMicros = 946684800 * 1_000_000

// FromTime returns t as microseconds since the PostgreSQL epoch.
func FromTime(t time.Time) int64 { return t.UnixMicro() - epochUnixMicros }

// ToTime returns the time that PostgreSQL timestamp us stands for.
func ToTime(us int64) time.Time { return time.UnixMicro(us + epochUnixMicros).UTC() }

// Now is FromTime(time.Now()).
func Now() int64 { return FromTime(time.Now()) }
