import Foundation

@testable import VLLMCtlKit

/// A free TCP port on 127.0.0.1, from the kernel.
package func freePort() throws -> Int {
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
