import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A one-connection listening socket in Linux's abstract Unix namespace, through which libcurl
/// hands a routed request's bytes to vllmctl: libcurl connects to it (CURLOPT_ABSTRACT_UNIX_SOCKET),
/// vllmctl accepts and gives the connection to an `HTTPRoute`.
///
/// libcurl 7.88 (Debian 12) cannot use a socket made elsewhere: it calls connect() even when
/// the sockopt callback says CURL_SOCKOPT_ALREADY_CONNECTED (fixed in 8.0). An abstract socket
/// has no file to clean up; anyone on the machine could connect to it, so only a connection
/// from this very process (SO_PEERCRED) is accepted, and the listener closes after it.
final class UnixBridge: @unchecked Sendable {
    /// The name libcurl connects to (without the leading NUL).
    let name: String
    private let lock = NSLock()
    private var listener: Int32

    init() throws {
        var bytes = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = generator.next() }
        name = "vllmctl-http-\(getpid())-" + bytes.map { String(format: "%02x", $0) }.joined()
        let fd = socket(AF_UNIX, SocketType.stream | SocketType.closeOnExec, 0)
        guard fd >= 0 else { throw Self.failure("socket") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = [UInt8](name.utf8)
        // Abstract: sun_path starts with NUL; the name's length, not a terminator, ends it.
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw[0] = 0
            for (i, b) in path.enumerated() { raw[i + 1] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + path.count)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, listen(fd, 4) == 0 else {
            let error = Self.failure("bind")
            close(fd)
            throw error
        }
        listener = fd
    }

    deinit { shut() }

    /// Closes the listener (libcurl's connect then fails, if it had not connected yet).
    func shut() {
        lock.withLock {
            if listener >= 0 { close(listener) }
            listener = -1
        }
    }

    /// The connection from this process, within `timeout` seconds; the listener closes then.
    func accept(timeout: Double) async throws -> Int32 {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try self.acceptBlocking(timeout: timeout) })
            }
        }
    }

    private func acceptBlocking(timeout: Double) throws -> Int32 {
        defer { shut() }
        let deadline = Date().addingTimeInterval(timeout)
        let me = getpid()
        while true {
            let fd = lock.withLock { listener }
            guard fd >= 0 else { throw Self.failure("accept", code: EBADF) }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw Self.failure("accept", code: ETIMEDOUT) }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, Int32(min(left, 1) * 1000))
            if ready <= 0 { continue }
            let conn = Glibc.accept(fd, nil, nil)
            if conn < 0 { continue }
            _ = fcntl(conn, F_SETFD, FD_CLOEXEC)
            var cred = PeerCredentials()
            var size = socklen_t(MemoryLayout<PeerCredentials>.size)
            if getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &size) == 0 && cred.pid == me {
                return conn
            }
            close(conn)  // not libcurl in this process
        }
    }

    private static func failure(_ call: String, code: Int32 = errno) -> VLLMCtlError {
        .unreachable(
            url: "",
            message:
                "the local socket for a routed request failed (\(call): \(String(cString: strerror(code))))",
            hint: "Try again; if it persists, the process may be out of file descriptors.")
    }
}

/// Linux's `struct ucred` (SO_PEERCRED), which Glibc's Swift module leaves out.
private struct PeerCredentials {
    var pid: pid_t = 0
    var uid: uid_t = 0
    var gid: gid_t = 0
}
