import Foundation
import Testing

@testable import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct SocketTypeTests {
    @Test func theSpelledOutConstantsAreTheKernelsOwn() throws {
        let fd = socket(AF_UNIX, SocketType.stream | SocketType.closeOnExec | SocketType.nonBlocking, 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var type: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        #expect(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) == 0)
        #expect(type == SocketType.stream)
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0)
        #expect(fcntl(fd, F_GETFL) & O_NONBLOCK != 0)
    }
}
