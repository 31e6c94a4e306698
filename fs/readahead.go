package fs

// DefaultReadAhead is how far the kernel reads ahead of a sequential
// reader of a mount, in either adapter (SetReadAhead).
//
// The kernel gives a FUSE mount 128 KiB of readahead whatever the daemon
// asks for at init, so a program reading a template 1 MiB at a time (dd,
// fio, a VM copying its disk) waited for each request in turn and the
// daemon worked on one request at a time, on one of the two cores: 0.54
// of a go-fuse loopback's sequential reads. With 4 MiB the kernel keeps
// several 1 MiB requests in flight, which the daemon serves in parallel
// while the reader consumes the previous ones: a 2 GiB template read with
// dd bs=1M took 1.7-2.1 s instead of 2.7-3.4 s (the loopback: 1.4-2.0 s).
// 1 MiB and 16 MiB measured about the same as 4 MiB. Readahead follows
// sequential streams only; random reads are sent as they are asked for.
const DefaultReadAhead = 4 << 20
