package fs

// DataFile is dataFile, for tests that inject disk failures.
type DataFile = dataFile

// OpenOSDataFile opens a data file on the local disk.
func OpenOSDataFile(path string) (DataFile, error) { return openOSDataFile(path) }

// SetDataOpener makes fsys open data files with open.
func SetDataOpener(fsys *FS, open func(path string) (DataFile, error)) { fsys.openData = open }
