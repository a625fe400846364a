import Foundation

@testable import VLLMCtlKit

/// Every port `freePort()` handed out in this process. Suites run in parallel: a port one
/// test got (and whose server is not up yet, or was stopped to be restarted on it) must not
/// go to another test, which would then find someone else's server there.
private let handedOut = Locked<Set<Int>>([])

/// A free TCP port on 127.0.0.1, from the kernel, never one handed out before in this process.
package func freePort() throws -> Int {
    for _ in 0..<1000 {
        let port = try kernelFreePort()
        if handedOut.withLock({ $0.insert(port).inserted }) { return port }
    }
    throw VLLMCtlError.file(path: "socket", message: "no port that was not handed out before")
}

private func kernelFreePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    try withUnsafeMutablePointer(to: &addr) { ptr in
        try ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            guard bind(fd, sa, len) == 0, getsockname(fd, sa, &len) == 0 else {
                throw VLLMCtlError.file(path: "socket", message: "cannot bind")
            }
        }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}
