import Foundation

@testable import VLLMCtlKit

/// Every port `freePort()` handed out in this process. Suites run in parallel: a port one
/// test got (and whose server is not up yet, or was stopped to be restarted on it) must not
/// go to another test, which would then find someone else's server there.
private let handedOut = Locked<Set<Int>>([])

/// A free TCP port on 127.0.0.1 below the kernel's ephemeral range (so that no `bind` to port
/// 0 by another test's process, such as `tunnel --local-port 0`, can take it while its server
/// starts), never one handed out before in this process.
package func freePort() throws -> Int {
    for _ in 0..<1000 {
        let port = Int.random(in: 20000..<32000)
        guard handedOut.withLock({ !$0.contains(port) }), canBind(port) else { continue }
        if handedOut.withLock({ $0.insert(port).inserted }) { return port }
    }
    throw VLLMCtlError.file(path: "socket", message: "no free port in 20000-31999")
}

/// Whether 127.0.0.1:`port` can be bound now.
private func canBind(_ port: Int) -> Bool {
    let fd = socket(AF_INET, SocketType.stream, 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    return withUnsafePointer(to: &addr) { ptr in
        ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}
