//go:build !race

package walrecord

const raceEnabled = false
