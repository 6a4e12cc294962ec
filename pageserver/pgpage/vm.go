package pgpage

// HeaderSize is SizeOfPageHeaderData: the bytes before a page's line
// pointers (or, on a visibility-map page, its map).
const HeaderSize = 24

// VMHeapBlocksPerPage is how many heap blocks one visibility-map page maps
// (access/visibilitymap.c: two bits per heap block after the page header).
const VMHeapBlocksPerPage = (BlockSize - HeaderSize) * 4 // 32672

// VMBits locates heapBlk's two visibility-map bits: the map's block, the
// byte of that page's map (from HeaderSize on) and the shift within the
// byte (HEAPBLK_TO_MAPBLOCK, HEAPBLK_TO_MAPBYTE, HEAPBLK_TO_OFFSET).
func VMBits(heapBlk uint32) (block, mapByte, shift uint32) {
	return heapBlk / VMHeapBlocksPerPage, heapBlk % VMHeapBlocksPerPage / 4, heapBlk % 4 * 2
}
