import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Asks ssh-agent for its identities over its Unix socket (SSH2_AGENTC_REQUEST_IDENTITIES).
enum AgentProbe {
    /// The agent's identities, or an error message.
    static func identities(socketPath: String) -> Result<[SSHIdentity], AgentError> {
        let kind = SocketType.stream | SocketType.closeOnExec
        let fd = socket(AF_UNIX, kind, 0)
        guard fd >= 0 else { return .failure(AgentError(message: String(cString: strerror(errno)))) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            return .failure(AgentError(message: "the socket path is too long"))
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else { return .failure(AgentError(message: String(cString: strerror(errno)))) }
        let request: [UInt8] = [0, 0, 0, 1, 11]
        guard write(fd, request, request.count) == request.count else {
            return .failure(AgentError(message: String(cString: strerror(errno))))
        }
        func readExactly(_ n: Int) -> Data? {
            var data = Data()
            var buffer = [UInt8](repeating: 0, count: 16384)
            while data.count < n {
                let got = read(fd, &buffer, min(buffer.count, n - data.count))
                if got <= 0 { return nil }
                data.append(contentsOf: buffer[0..<got])
            }
            return data
        }
        guard let header = readExactly(4) else {
            return .failure(AgentError(message: "no answer"))
        }
        let length = header.reduce(0) { $0 << 8 | Int($1) }
        guard length > 0, length < 1 << 20, let body = readExactly(length),
            let identities = SSHAdvice.agentIdentities(body)
        else {
            return .failure(AgentError(message: "an answer that is not an identity list"))
        }
        return .success(identities)
    }

    struct AgentError: Error {
        var message: String
    }
}
