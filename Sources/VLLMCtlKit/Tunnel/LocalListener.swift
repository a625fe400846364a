import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A bound, listening TCP socket on this machine.
public struct LocalListener: Sendable {
    /// The listening socket; a ``Tunnel`` owns and closes it.
    public let fd: Int32
    /// The address bound (`localhost` given is `127.0.0.1` here).
    public let address: String
    /// The port actually bound (the kernel's choice when 0 was asked for).
    public let port: Int

    /// Binds `address:port` (an IPv4 or IPv6 literal, or `localhost`) and listens.
    public static func bind(address: String, port: Int) throws -> LocalListener {
        guard (0...65535).contains(port) else {
            throw VLLMCtlError.invalidInput(
                "--local-port \(port) is not a port number", hint: "Use 1-65535, or 0 for any free port.")
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = SocketType.stream
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let host = address == "localhost" ? "127.0.0.1" : address
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let ai = list else {
            throw VLLMCtlError.invalidInput(
                "--bind \(address) is not an address of this machine (\(String(cString: gai_strerror(rc))))",
                hint: "Use 127.0.0.1 (the default), or 0.0.0.0 to let other machines connect.")
        }
        defer { freeaddrinfo(list) }
        let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | SocketType.closeOnExec, 0)
        guard fd >= 0 else {
            throw VLLMCtlError.invalidInput(
                "Cannot create a socket: \(String(cString: strerror(errno)))", hint: "Try again.")
        }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard Glibc.bind(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0, listen(fd, 512) == 0 else {
            let code = errno
            close(fd)
            let place = address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
            switch code {
            case EADDRINUSE:
                throw VLLMCtlError.invalidInput(
                    "Local port \(place) is already in use",
                    hint:
                        "Pick another with --local-port (0 picks a free one). `vllmctl status` shows tunnels vllmctl has open; `ss -ltnp 'sport = :\(port)'` shows who else listens there."
                )
            case EACCES:
                throw VLLMCtlError.invalidInput(
                    "Binding \(place) needs privileges", hint: "Use a port above 1023 with --local-port.")
            case EADDRNOTAVAIL:
                throw VLLMCtlError.invalidInput(
                    "\(address) is not an address of this machine",
                    hint: "Use 127.0.0.1 (the default), or 0.0.0.0 to let other machines connect.")
            default:
                throw VLLMCtlError.invalidInput(
                    "Cannot listen on \(place): \(String(cString: strerror(code)))",
                    hint: "Try another --local-port.")
            }
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let bound = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        var actual = port
        if bound == 0 {
            actual =
                storage.ss_family == sa_family_t(AF_INET6)
                ? withUnsafePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                        Int(UInt16(bigEndian: $0.pointee.sin6_port))
                    }
                }
                : withUnsafePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        Int(UInt16(bigEndian: $0.pointee.sin_port))
                    }
                }
        }
        return LocalListener(fd: fd, address: host, port: actual)
    }

    /// `http://ADDRESS:PORT`, with the address a client on this machine can use.
    public var baseURL: String { "http://\(Self.clientHost(bind: address)):\(port)" }

    /// The host part of a URL that reaches a socket bound to `bind` from this machine.
    public static func clientHost(bind: String) -> String {
        switch bind {
        case "0.0.0.0": "127.0.0.1"
        case "::": "[::1]"
        default: bind.contains(":") ? "[\(bind)]" : bind
        }
    }
}
