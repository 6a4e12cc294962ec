// Package layer is the pageserver's immutable layer files (PS §5.2, §5.7):
// a delta layer holds every version of every key in a key range × LSN range
// [start, end); an image layer holds one image per existing key of a key
// range at one LSN, and a key of its range that it does not hold does not
// exist at that LSN.
//
// Guarantees: a layer file is written under a temporary name, fsynced,
// renamed to its final name and the directory fsynced, so a file with a
// layer name is complete and never changes afterwards. Every byte a reader
// uses is covered by a CRC-32C, and readers check the structure of what
// they read (sorted entries inside the declared ranges) before using it:
// corruption gives an error wrapping ErrCorrupt that names the file and
// offset, never a panic and never wrong data.
//
// # File format (version 1, all integers big-endian)
//
//	offset 0    header, 128 bytes:
//	              magic       [8]  "STRDELTA" or "STRIMAGE"
//	              version     u16  1
//	              reserved    u16  0
//	              tenant      [16]
//	              timeline    [16]
//	              key start   [18] (18-byte key form, PS §1.1)
//	              key end     [18] exclusive
//	              lsn start   u64
//	              lsn end     u64  exclusive; an image layer at L has [L, L+1)
//	              index off   u64  where the index starts (= end of the blocks)
//	              blocks      u32  number of data blocks
//	              entries     u64  number of entries in all blocks
//	              reserved    [8]  0
//	              crc         u32  CRC-32C of bytes 0..124
//	offset 128  data blocks, back to back, each a payload followed by the
//	            CRC-32C of the payload (u32). A payload is a run of entries
//	            sorted by (key, lsn), strictly increasing across the file:
//	              delta entry: key [18], lsn u64, uvarint n, n bytes of an
//	                           encoded value.Value (PS §1.3)
//	              image entry: key [18], uvarint n, n bytes of image
//	            A block holds at least one entry; the writer closes a block
//	            once it reaches the target size (8 KiB by default), so a
//	            block is bigger only when a single entry is.
//	index off   the block index: per block its first key [18], first lsn
//	            u64 (an image layer's LSN for images), offset u64 and length
//	            u32 (payload + CRC); then the CRC-32C of the whole index (u32).
//	            The file ends right after it.
//
// Opening a layer reads the header and the index and keeps the index in
// memory (38 bytes per block: about 1.2 MiB for a 256 MiB layer); a point
// lookup binary-searches it and reads one block, or more when the versions
// of one key span blocks, walking the block's entries only up to the one it
// needs (entries sort as their big-endian key and LSN bytes, so the walk
// compares bytes). The index being complete is why reads never need
// the rest of the file.
//
// Later work: Neon's on-disk B-tree format (§5.7) if Neon tools must read
// our files, a block cache, and compression of image blocks.
package layer
