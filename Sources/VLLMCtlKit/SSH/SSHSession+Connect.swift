import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The TCP connection under a session: every address of the host in turn, each within
/// ConnectTimeout.
extension SSHSession {
    static func connectSocket(_ options: SSHConnectOptions) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = SocketType.stream
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(options.host, String(options.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw SSHError(
                host: options.place,
                message: "cannot resolve `\(options.host)`: \(String(cString: gai_strerror(rc)))",
                hint: "Check HostName in your ssh_config and your network")
        }
        defer { freeaddrinfo(list) }
        var lastProblem = "no address"
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let ai = node {
            node = ai.pointee.ai_next
            let fd = Glibc.socket(
                ai.pointee.ai_family, ai.pointee.ai_socktype | SocketType.closeOnExec,
                ai.pointee.ai_protocol)
            if fd < 0 {
                lastProblem = String(cString: strerror(errno))
                continue
            }
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            var ok = Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0
            if !ok && errno == EINPROGRESS {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let n = poll(&pfd, 1, Int32(options.connectTimeout * 1000))
                if n == 1 {
                    var soError: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
                    ok = soError == 0
                    if !ok { lastProblem = String(cString: strerror(soError)) }
                } else {
                    lastProblem = "no answer within \(Int(options.connectTimeout)) s (ConnectTimeout)"
                }
            } else if !ok {
                lastProblem = String(cString: strerror(errno))
            }
            if ok {
                _ = fcntl(fd, F_SETFL, flags)
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                if var size = options.sendBufferSize {
                    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
                }
                return fd
            }
            Glibc.close(fd)
        }
        throw SSHError(
            host: options.place, message: "cannot connect: \(lastProblem)",
            hint:
                "Check that the host is up and reachable from here (VPN?), and HostName/Port in your ssh_config",
            connectionLost: true)
    }
}

/// Sets Linux's `TCP_QUICKACK` (12, netinet/tcp.h, not in Swift's Glibc module) on `fd`: the
/// bytes read so far are acknowledged at once. Linux clears it by itself, so the session's
/// reader sets it after every read.
func acknowledgeAtOnce(_ fd: Int32) {
    var one: Int32 = 1
    _ = setsockopt(fd, Int32(IPPROTO_TCP), 12, &one, socklen_t(MemoryLayout<Int32>.size))
}
