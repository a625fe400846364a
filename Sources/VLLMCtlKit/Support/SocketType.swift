/// glibc's `SOCK_*` socket types and flags, spelled out (Linux's values, the same on every
/// architecture Swift runs on). glibc declares them as an enum in `bits/socket_type.h`, a
/// header its module map leaves textual: when a C module of the build (libcurl's, libssh2's,
/// NIO's shims) is compiled first and includes it, the enum can end up in that module, and
/// `SOCK_STREAM` is then "not in scope" in a file that imports only Glibc. That depends on the
/// order of the build, so it failed now and then, in fresh clones too.
package enum SocketType {
    /// `SOCK_STREAM`.
    package static let stream: Int32 = 1
    /// `SOCK_CLOEXEC` (`O_CLOEXEC`).
    package static let closeOnExec: Int32 = 0o2000000
    /// `SOCK_NONBLOCK` (`O_NONBLOCK`).
    package static let nonBlocking: Int32 = 0o4000
}
