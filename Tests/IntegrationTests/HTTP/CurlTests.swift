import CCurl
import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 12 item 15: the libcurl wrapper's request body size (`curl_off_t`) and its error
/// buffer, against a live HTTP server in this process.
@Suite struct CurlTests {
    @Test func bodiesWithNULBytesArriveWhole() async throws {
        let server = try LoopbackServer(serve: echo)
        var body = Data("before\0after".utf8)
        body += Data((0...255).map { UInt8($0) })
        let response = try await CurlHTTPClient().send(
            HTTPRequest(method: "POST", url: server.url, body: body))
        #expect(response.status == 200)
        #expect(response.headers["x-received"] == String(body.count))
        #expect(sameBytes(response.body, body))
    }

    /// A `curl_off_t` option set as a `long` (or the reverse) is refused, not passed through
    /// the varargs as the wrong type: the old code set CURLOPT_POSTFIELDSIZE_LARGE that way.
    @Test func typedSettersRefuseOptionsOfAnotherType() throws {
        let easy = try CurlEasy()
        #expect(vc_setopt_long(easy.handle, CURLOPT_POSTFIELDSIZE_LARGE, 5) == CURLE_BAD_FUNCTION_ARGUMENT)
        #expect(vc_setopt_off(easy.handle, CURLOPT_TIMEOUT_MS, 5) == CURLE_BAD_FUNCTION_ARGUMENT)
        #expect(vc_setopt_off(easy.handle, CURLOPT_POSTFIELDSIZE_LARGE, 5) == CURLE_OK)
        #expect(vc_setopt_long(easy.handle, CURLOPT_TIMEOUT_MS, 5) == CURLE_OK)
    }

    @Test func anEightMiBBodyArrivesWhole() async throws {
        let server = try LoopbackServer(serve: echo)
        // Every byte value, NUL included, in no simple repeating order.
        let body = Data((0..<(8 << 20)).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) })
        let response = try await CurlHTTPClient().send(
            HTTPRequest(method: "POST", url: server.url, body: body, timeout: 120))
        #expect(response.headers["x-received"] == String(body.count))
        #expect(sameBytes(response.body, body))
    }

    /// Whether `got` is `sent`; a Bool, so that a failure does not make the testing library
    /// compute the difference of two 8 MiB values (which takes hours).
    func sameBytes(_ got: Data, _ sent: Data) -> Bool {
        if got == sent { return true }
        let common = min(got.count, sent.count)
        let at = (0..<common).first { got[got.startIndex + $0] != sent[sent.startIndex + $0] } ?? common
        Issue.record("\(got.count) bytes came back for \(sent.count) sent, the first difference at \(at)")
        return false
    }

    /// libcurl's own words (from CURLOPT_ERRORBUFFER) name the address; curl_easy_strerror's
    /// ("Couldn't connect to server") would not.
    @Test func errorsCarryLibcurlsOwnDetail() async throws {
        let port = try freePort()
        let error = try await #require(throws: VLLMCtlError.self) {
            try await CurlHTTPClient().send(HTTPRequest(url: "http://127.0.0.1:\(port)/"))
        }
        #expect("\(error)".contains("Failed to connect to 127.0.0.1 port \(port)"), "\(error)")
    }

    /// Failures one after another on one handle: each error says its own, never the one before.
    @Test func oneHandleNeverRepeatsAnEarlierError() throws {
        let easy = try CurlEasy()
        let first = try freePort()
        let second = try freePort()
        let silent = try LoopbackServer { _ = readRequest($0) }
        func failure(_ url: String) -> String {
            do {
                _ = try easy.perform(HTTPRequest(url: url, timeout: 10)) { _ in true }
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        let a = failure("http://127.0.0.1:\(first)/")
        #expect(a.contains("port \(first)"), "\(a)")
        let b = failure("http://127.0.0.1:\(second)/")
        #expect(b.contains("port \(second)") && !b.contains("port \(first)"), "\(b)")
        // A server that closes without a word: libcurl's detail is "Empty reply from server".
        let c = failure(silent.url)
        #expect(c.contains("Empty reply") && !c.contains("port \(second)"), "\(c)")
        // And a success in between leaves nothing behind for the next failure either.
        let echoing = try LoopbackServer(serve: echo)
        #expect(throws: Never.self) { try easy.perform(HTTPRequest(url: echoing.url)) { _ in true } }
        let d = failure("http://127.0.0.1:\(first)/")
        #expect(d.contains("port \(first)") && !d.contains("Empty reply"), "\(d)")
    }
}

/// Answers one HTTP/1.1 request with its own body and `X-Received: <bytes read>`.
@Sendable func echo(_ fd: Int32) {
    let body = readRequest(fd)
    let head =
        "HTTP/1.1 200 OK\r\nContent-Length: \(body.count)\r\nX-Received: \(body.count)\r\nConnection: close\r\n\r\n"
    let reply = Array(head.utf8) + body
    var sent = 0
    while sent < reply.count {
        let n = reply[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { break }
        sent += n
    }
}

/// Reads one request (its headers, then Content-Length bytes) and returns the body.
@Sendable func readRequest(_ fd: Int32) -> [UInt8] {
    var data = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    var headerEnd: Int?
    var length = 0
    while true {
        if let end = headerEnd, data.count - end >= length { break }
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        data += buffer[..<n]
        if headerEnd == nil, let end = findHeaderEnd(data) {
            headerEnd = end
            let head = String(decoding: data[..<end], as: UTF8.self).lowercased()
            for line in head.split(separator: "\r\n") where line.hasPrefix("content-length:") {
                length =
                    Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
    }
    return headerEnd.map { Array(data[$0...]) } ?? []
}

/// The index just past the blank line that ends the headers.
private func findHeaderEnd(_ data: [UInt8]) -> Int? {
    guard data.count >= 4 else { return nil }
    for i in 0...(data.count - 4)
    where data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 {
        return i + 4
    }
    return nil
}
