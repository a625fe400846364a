import Foundation

@testable import VLLMCtlKit

/// A TCP server on 127.0.0.1 that hands each connection to `serve`, one at a time on a thread
/// of its own, and then closes it; out of descriptors, it waits and accepts again. Stops with
/// the object.
package final class LoopbackServer: Sendable {
    package let listener: Int32
    package let port: Int
    package var url: String { "http://127.0.0.1:\(port)/" }

    package init(serve: @escaping @Sendable (Int32) -> Void) throws {
        let bound = try LocalListener.bind(address: "127.0.0.1", port: 0)
        listener = bound.fd
        port = bound.port
        let listener = self.listener
        Thread.detachNewThread {
            while true {
                let fd = accept(listener, nil, nil)
                if fd < 0 {
                    let retry = [EINTR, ECONNABORTED, EMFILE, ENFILE].contains(errno)
                    if retry { usleep(10_000) } else { return }  // else: the listener was shut down
                    continue
                }
                serve(fd)
                close(fd)
            }
        }
    }

    deinit {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }
}
