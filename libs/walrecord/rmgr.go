package walrecord

import "strconv"

// Resource manager ids of PostgreSQL 15 (access/rmgrlist.h), the values of
// xl_rmid. The order is part of the WAL format.
const (
	RmXLOG              uint8 = 0
	RmTransaction       uint8 = 1
	RmStorage           uint8 = 2
	RmCLOG              uint8 = 3
	RmDatabase          uint8 = 4
	RmTablespace        uint8 = 5
	RmMultiXact         uint8 = 6
	RmRelMap            uint8 = 7
	RmStandby           uint8 = 8
	RmHeap2             uint8 = 9
	RmHeap              uint8 = 10
	RmBtree             uint8 = 11
	RmHash              uint8 = 12
	RmGin               uint8 = 13
	RmGist              uint8 = 14
	RmSequence          uint8 = 15
	RmSPGist            uint8 = 16
	RmBRIN              uint8 = 17
	RmCommitTs          uint8 = 18
	RmReplicationOrigin uint8 = 19
	RmGeneric           uint8 = 20
	RmLogicalMessage    uint8 = 21

	// RmMaxBuiltin is the largest built-in resource manager id; ids from
	// 128 to 255 are custom resource managers (RM_MIN_CUSTOM_ID).
	RmMaxBuiltin = RmLogicalMessage
)

// rmgrNames is indexed by resource manager id; the names are the ones
// pg_waldump prints.
var rmgrNames = [...]string{
	RmXLOG:              "XLOG",
	RmTransaction:       "Transaction",
	RmStorage:           "Storage",
	RmCLOG:              "CLOG",
	RmDatabase:          "Database",
	RmTablespace:        "Tablespace",
	RmMultiXact:         "MultiXact",
	RmRelMap:            "RelMap",
	RmStandby:           "Standby",
	RmHeap2:             "Heap2",
	RmHeap:              "Heap",
	RmBtree:             "Btree",
	RmHash:              "Hash",
	RmGin:               "Gin",
	RmGist:              "Gist",
	RmSequence:          "Sequence",
	RmSPGist:            "SPGist",
	RmBRIN:              "BRIN",
	RmCommitTs:          "CommitTs",
	RmReplicationOrigin: "ReplicationOrigin",
	RmGeneric:           "Generic",
	RmLogicalMessage:    "LogicalMessage",
}

// RmgrName returns the resource manager's name as pg_waldump prints it.
// Custom resource managers (ids 128 to 255) are "custom###", as pg_waldump
// names them when their module is not loaded; ids PostgreSQL 15 leaves
// undefined are "unknown###".
func RmgrName(id uint8) string {
	if int(id) < len(rmgrNames) {
		return rmgrNames[id]
	}
	if id >= 128 {
		return "custom" + pad3(id)
	}
	return "unknown" + pad3(id)
}

func pad3(id uint8) string {
	s := strconv.Itoa(int(id))
	for len(s) < 3 {
		s = "0" + s
	}
	return s
}
