// Tests run programs (redis-cli, openssl, the built binaries, worker processes) through the package's one child
// process helper.
@_exported import ChildProcesses
