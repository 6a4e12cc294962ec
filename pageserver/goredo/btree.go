package goredo

// Redo of XLOG_BTREE_INSERT_LEAF (btree_xlog_insert for a leaf, no
// posting-list split, no metapage): the index tuple in the block data goes
// in at offnum, the line pointers from offnum on moving up one.

import (
	"fmt"

	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/pgpage"
)

const (
	xlogBtreeInsertLeaf = 0x00
	sizeOfBtreeInsert   = 2 // offnum u16
)

func btreeInsertLeaf(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, _ bool) error {
	md, err := mainData(rec, sizeOfBtreeInsert)
	if err != nil {
		return err
	}
	if len(blk.Data) == 0 {
		return fmt.Errorf("no index tuple in the block data")
	}
	item, err := placeItem(page, le.Uint16(md[0:]), len(blk.Data), false, false)
	if err != nil {
		return fmt.Errorf("failed to add new item: %w", err)
	}
	copy(item, blk.Data)
	pgpage.SetLSN(page, rec.EndLSN)
	return nil
}
