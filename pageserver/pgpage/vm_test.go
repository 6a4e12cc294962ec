package pgpage

import "testing"

func TestVMBits(t *testing.T) {
	for _, c := range []struct{ heap, block, mapByte, shift uint32 }{
		{0, 0, 0, 0}, {5, 0, 1, 2}, {VMHeapBlocksPerPage - 1, 0, 8167, 6}, {VMHeapBlocksPerPage, 1, 0, 0}, {VMHeapBlocksPerPage + 7, 1, 1, 6},
	} {
		if b, m, s := VMBits(c.heap); b != c.block || m != c.mapByte || s != c.shift {
			t.Errorf("VMBits(%d) = %d, %d, %d; want %d, %d, %d", c.heap, b, m, s, c.block, c.mapByte, c.shift)
		}
	}
}
