package consensus

import (
	"os"

	"golang.org/x/sys/unix"
)

// writeBehind starts the write-back of [off, off+n) of f and waits for
// that of the range before it (off-n, n) to finish, so at most two ranges
// are dirty at a time.
func writeBehind(f *os.File, off, n int64) {
	fd := int(f.Fd())
	_ = unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE)
	if off >= n {
		_ = unix.SyncFileRange(fd, off-n, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	}
}
